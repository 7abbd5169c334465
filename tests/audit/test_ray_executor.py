"""The ``ray`` executor of the embed stage on a real local Ray cluster (2 CPUs, no dashboard):
the same flags and scores as the local executor, cancel, a killed Ray worker process, and the
settings that choose it. The dataset is real PNG files written here, with planted problems."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import time

import numpy as np
import pytest
import ray
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit import ingest as ingest_module
from audit.cli import build_parser, _config_overrides, main
from audit.config import AuditConfig
from audit import image_measures
from audit.detectors.training_dynamics import HeadConfig, training_dynamics
from audit.embedders import EmbedContext, ImageRows, make_embedder
from audit.embedders.clip import load_clip
from audit.errors import Cancelled, ConfigError
from audit.executors import row_ranges
from audit.ingest import ingest
from audit.knn import build_knn_graph
from audit.plan import run_audit
from audit.probe import cross_fit_probe
from audit import ray_executor
from audit.ray_executor import MAX_THUMBNAIL_ROWS, RayExecutor
from audit.settings import load_settings
from audit.store import Store
from audit.store import datasets as dataset_store
from audit.store import jobs as job_store
from audit.store import runs
from tests.audit.ray_worker_setup import KILL_SWITCH_ENV, TINY_CLIP_ENV, prepare_worker
from tests.conftest import PROJECT_ROOT, TINY_CLIP_CONFIG, kill_workers_of

CLASSES = {"red": (200, 40, 30), "green": (40, 170, 60), "blue": (30, 60, 210)}
PER_CLASS = 50
MISLABELLED = ["green/x_red_0.png", "green/x_red_1.png", "blue/x_green_0.png"]
BROKEN_AFTER_INGEST = "red/041.png"      # decodes at ingestion, truncated before the audit
AUDITED = {"embedder": "pixels", "probe": "logistic", "folds": 2, "k": 5, "loader_workers": 0,
           "detectors": ["label_issue", "knn_label", "outlier", "near_duplicate", "overall"]}
SCORE_TOLERANCE = 1e-4
BATCH_SIZE = load_settings(toml_path=Path("absent.toml"), env={}).batch_size
JSON_COLUMNS = ("config", "summary", "notes", "timings")

@pytest.fixture
def executors(cluster):
    """Makes RayExecutors on the test cluster; each is closed (its StopFlag actor let go)
    after the test."""
    made = []

    def make(spec_of=None, should_cancel=None) -> RayExecutor:
        made.append(RayExecutor(ray, "", spec_of, should_cancel))
        return made[-1]

    yield make
    for executor in made:
        executor.close()


def write_images(root: Path) -> None:
    """Three colour classes of noisy 24-pixel squares, a few filed under the wrong class and one
    exact copy (a near duplicate)."""
    rng = np.random.default_rng(7)

    def square(colour) -> Image.Image:
        noise = rng.normal(0, 25, size=(24, 24, 3))
        pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
        pixels[rng.integers(0, 16):, rng.integers(0, 16):] //= 2   # a darker corner
        return Image.fromarray(pixels, mode="RGB")

    for name, colour in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            square(colour).save(root / name / f"{i:03d}.png")
    for relative in MISLABELLED:
        true_class = relative.split("_")[1]
        square(CLASSES[true_class]).save(root / relative)
    shutil.copy(root / "blue" / "000.png", root / "blue" / "copy_of_000.png")

@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_clip_name):
    """A real local Ray instance for this module, its workers able to import the project, to
    build the tiny test CLIP, and armed with the kill switch's hook (inactive until a test
    creates the switch file)."""
    switch = tmp_path_factory.mktemp("ray_switch") / "kill.switch"
    tiny_config = tmp_path_factory.mktemp("ray_clip") / f"{tiny_clip_name}.json"
    tiny_config.write_text(json.dumps(TINY_CLIP_CONFIG))
    python_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {KILL_SWITCH_ENV: str(switch), "PYTHONPATH": python_path,
                                       TINY_CLIP_ENV: str(tiny_config)},
                          "worker_process_setup_hook": prepare_worker})
    yield switch
    ray.shutdown()

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A data home with the dataset ingested, then one of its images truncated."""
    home = tmp_path_factory.mktemp("ray_home")
    settings = load_settings(toml_path=home / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(home), "AUDIT_INGEST_WORKERS": "2"})
    store = Store.from_settings(settings)
    source = tmp_path_factory.mktemp("ray_images") / "colours"
    write_images(source)
    dataset_id = ingest(store, source, settings, name="colours")
    broken = source / BROKEN_AFTER_INGEST
    broken.write_bytes(broken.read_bytes()[:60])
    return {"home": home, "settings": settings, "store": store, "id": dataset_id}

def audit(dataset, executor: str, config: dict = AUDITED, **hooks) -> int:
    shutil.rmtree(dataset["home"] / "embeddings", ignore_errors=True)   # decode every image
    return run_audit(dataset["store"], dataset["settings"], dataset["id"],
                     {**config, "executor": executor}, **hooks)

def run_record(dataset, run_id: int) -> dict:
    """The run's row, its JSON columns read."""
    row = runs.get_run(dataset["store"], run_id)
    return {key: json.loads(value) if key in JSON_COLUMNS and value else value
            for key, value in row.items()}

def scores(dataset, run_id: int):
    return runs.scores_frame(dataset["store"], run_id).set_index(["detector", "sample_id"])

def test_ray_audit_gives_the_flags_and_scores_of_the_local_one(cluster, dataset) -> None:
    on_ray = audit(dataset, "ray")
    local = audit(dataset, "local")
    ray_run, local_run = (run_record(dataset, r) for r in (on_ray, local))
    ray_scores, local_scores = scores(dataset, on_ray), scores(dataset, local)

    assert ray_run["status"] == local_run["status"] == "succeeded"
    assert ray_run["config"]["executor"] == "ray" and local_run["config"]["executor"] == "local"
    executor = ray_run["summary"]["executor"]
    assert executor["name"] == "ray" and executor["tasks"]["decode_files"] > 1
    assert "encode_device" not in executor             # pixels: no model to place
    assert executor["tasks"]["fold_probabilities"] == AUDITED["folds"]
    assert local_run["summary"]["executor"] == {"name": "local"}
    assert ray_run["notes"]["embedding"] == local_run["notes"]["embedding"]
    assert BROKEN_AFTER_INGEST in ray_run["notes"]["embedding"]
    assert ray_scores.index.equals(local_scores.index)
    assert (ray_scores["is_issue"] == local_scores["is_issue"]).all()
    assert np.abs(ray_scores["score"] - local_scores["score"]).max() <= SCORE_TOLERANCE
    samples = dataset_store.samples_frame(dataset["store"], dataset["id"])
    planted = set(samples.loc[samples["path"].isin(MISLABELLED), "sample_id"])
    flagged = set(ray_scores.loc["label_issue"].query("is_issue").index)
    assert len(planted & flagged) >= 2, "the planted label errors are found, not only agreed on"

def test_cancel_during_the_ray_embed_stage_ends_the_run_cancelled(cluster, dataset) -> None:
    shards_done = []

    def progress(fraction: float, message: str) -> None:
        if "on Ray" in message:
            shards_done.append(message)

    with pytest.raises(Cancelled):
        audit(dataset, "ray", progress=progress, should_cancel=lambda: bool(shards_done))
    run = run_record(dataset, int(runs.list_runs(dataset["store"], dataset["id"])["id"].max()))
    assert run["status"] == "cancelled"
    assert len(shards_done) == 1, "cancel is honoured at the first shard boundary"
    assert "embed" not in run["timings"], "the embed stage was cut short, not finished"

def test_a_killed_ray_worker_process_does_not_fail_the_run(cluster, dataset) -> None:
    cluster.write_text("decode")
    run_id = audit(dataset, "ray")
    killed = cluster.with_suffix(".fired")
    assert killed.exists(), "a shard task took the switch and killed its worker process"
    with pytest.raises(ProcessLookupError):
        os.kill(int(killed.read_text()), 0)
    run = run_record(dataset, run_id)
    assert run["status"] == "succeeded"
    assert len(scores(dataset, run_id).loc["overall"]) == 3 * PER_CLASS + len(MISLABELLED)

def test_image_measures_run_once_as_a_ray_data_pipeline_and_score_as_locally(
        cluster, dataset, monkeypatch) -> None:
    """image_quality's measures and near_duplicate's hashes come from one decode of each image,
    batch by batch in a Ray Data pipeline after the first batch (batches of 40 here), and give
    the local run's scores exactly."""
    monkeypatch.setattr(image_measures, "BATCH", 40)
    config = {**AUDITED, "detectors": ["image_quality", "near_duplicate"]}
    on_ray, local = (run_audit(dataset["store"], dataset["settings"], dataset["id"],
                               {**config, "executor": executor}) for executor in ("ray", "local"))
    tasks = run_record(dataset, on_ray)["summary"]["executor"]["tasks"]
    usable = len(scores(dataset, local).loc["image_quality"])
    # the first batch runs in this process (were none of it readable, the rest would not be)
    assert tasks["measure_batch"] == len(row_ranges(usable - 40, 2, 40)), "measured once each"
    assert "signature_batch" not in tasks
    ray_scores, local_scores = scores(dataset, on_ray), scores(dataset, local)
    assert ray_scores.index.equals(local_scores.index)
    assert ray_scores[["score", "is_issue", "details"]].equals(
        local_scores[["score", "is_issue", "details"]])
    copies = local_scores.loc["near_duplicate"].query("is_issue")
    assert len(copies) >= 2, "the planted copy is found, not only agreed on"


def tagged_squares(batch: dict, *, tag: str) -> dict:
    """A ``map_rows`` function for the test below: each row's tag and square."""
    values = batch["value"]
    return {"label": np.array([f"{tag}{v}" for v in values], dtype=object), "square": values ** 2}


def test_map_rows_on_ray_data_keeps_row_order_and_honours_cancel(executors) -> None:
    """100 rows in batches of at most 7 on the cluster: every output row where its input row
    was, one task per batch; cancel after the first batch ends the pipeline with Cancelled."""
    values = np.arange(100)
    on_ray = executors()
    out = on_ray.map_rows(tagged_squares, {"value": values}, 7, {"tag": "r"})
    assert out["square"].tolist() == (values ** 2).tolist()
    assert out["label"].tolist() == [f"r{v}" for v in values]
    assert on_ray.facts["tasks"] == {"tagged_squares": len(row_ranges(100, 2, 7))}
    seen = []
    cancelling = executors(should_cancel=lambda: bool(seen))
    with pytest.raises(Cancelled):
        cancelling.map_rows(tagged_squares, {"value": values}, 7, {"tag": "r"},
                            lambda fraction, message: seen.append(message))
    assert len(seen) == 1, "no batch is reported after the cancel"


def test_clip_vectors_for_the_clip_detectors_are_embedded_on_ray(cluster, dataset,
                                                                 tiny_clip_name,
                                                                 tmp_path) -> None:
    """The run's embedder is pixels, so vl_consistency's CLIP image vectors are a second
    embedding; it runs on Ray Data too (on CPUs: CLIP actors that decode their own batches),
    survives an encode actor killed mid-stage, and scores as locally. The tiny CLIP's weights
    are a local checkpoint file (a file counts as pretrained; random weights are refused)."""
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.save(load_clip(tiny_clip_name, None, "cpu").model.state_dict(), checkpoint)
    config = {**AUDITED, "detectors": ["vl_consistency"], "clip_model": tiny_clip_name,
              "clip_pretrained": str(checkpoint)}
    cluster.write_text("encode")
    on_ray, local = (audit(dataset, executor, config=config) for executor in ("ray", "local"))
    killed = cluster.with_suffix(".fired")
    assert killed.exists(), "an encode actor took the switch and killed its process"
    killed.unlink()
    usable = len(scores(dataset, local).loc["vl_consistency"])
    executor = run_record(dataset, on_ray)["summary"]["executor"]
    tasks = executor["tasks"]
    assert executor["encode_device"] == "cpu"                   # this cluster has no GPU
    assert tasks["decode_files"] == len(row_ranges(usable + 1, 2, MAX_THUMBNAIL_ROWS))  # pixels
    assert tasks["EncodeBatches"] == len(row_ranges(usable, 2, BATCH_SIZE))  # CLIP, decoding too
    ray_scores, local_scores = scores(dataset, on_ray), scores(dataset, local)
    assert ray_scores.index.equals(local_scores.index)
    assert np.ptp(local_scores["score"]) > 0, "the scores differ between samples"
    assert np.abs(ray_scores["score"] - local_scores["score"]).max() <= SCORE_TOLERANCE
    assert (ray_scores["is_issue"] == local_scores["is_issue"]).all()


def test_the_gpu_clusters_pipeline_shape_gives_the_local_vectors(executors, tiny_clip_name,
                                                                 tmp_path, monkeypatch) -> None:
    """Beside GPUs, decode_files tasks feed the encode actors. That shape, forced here on CPUs,
    gives the local CLIP vectors (within 1e-5) and the same failed row."""
    monkeypatch.setattr(ray_executor, "decodes_in_tasks", lambda on_gpu, encodes: True)
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.save(load_clip(tiny_clip_name, None, "cpu").model.state_dict(), checkpoint)
    write_images(tmp_path / "colours")
    paths = sorted((tmp_path / "colours").rglob("*.png"))
    paths[5].write_bytes(b"not a png")
    rows = ImageRows(paths, [f"{i:064x}" for i in range(len(paths))], np.zeros(len(paths), int))
    context = EmbedContext(tmp_path / "home", 10_000_000, 16, 0, "cpu", 0, 2)
    embedder, _ = make_embedder("clip", context, tiny_clip_name, str(checkpoint))
    local = embedder.embed(rows)
    shutil.rmtree(tmp_path / "home")
    spec = ray_executor.EmbedderSpec("clip", context, tiny_clip_name, str(checkpoint), "cpu")
    on_ray = executors(spec_of=lambda name: spec)
    remote = on_ray.embed(embedder, rows, None)
    batches = len(row_ranges(len(paths), 2, 16))
    assert on_ray.facts["tasks"] == {"decode_files": batches, "EncodeBatches": batches}
    assert list(remote.failed) == list(local.failed) == [5]
    assert np.abs(remote.vectors - local.vectors).max() <= 1e-5


def test_auto_takes_the_clusters_gpus_for_the_encode_actors_and_a_gpuless_cluster_is_refused():
    assert ray_executor.encode_device("auto", "cpu", 2) == "cuda"   # a driver on a CPU node
    assert ray_executor.encode_device("auto", "cpu", 0) == "cpu"
    assert ray_executor.encode_device("auto", "cuda", 1) == "cuda"
    assert ray_executor.encode_device("cpu", "cpu", 2) == "cpu"     # asked for: kept
    with pytest.raises(ConfigError, match="advertises none"):
        ray_executor.encode_device("cuda", "cuda", 0)


@pytest.mark.parametrize("probe", ["logistic", "mlp"])
def test_the_probes_folds_on_ray_give_the_local_probabilities(executors, probe) -> None:
    features, labels = clustered_vectors(600, classes=4)
    on_ray = executors()
    local = cross_fit_probe(features, labels, 4, folds=3, seed=0, kind=probe)
    remote = cross_fit_probe(features, labels, 4, folds=3, seed=0, kind=probe, executor=on_ray)
    assert on_ray.facts["tasks"] == {"fold_probabilities": 3}
    assert np.array_equal(remote.folds, local.folds)
    assert np.abs(remote.pred_probs - local.pred_probs).max() <= SCORE_TOLERANCE


def test_the_knn_cell_assignment_and_searches_on_ray_give_the_local_graph(executors) -> None:
    vectors, _ = clustered_vectors(3000, classes=6)
    on_ray = executors()
    local = build_knn_graph(vectors, 10, exact_limit=100)          # the approximate search
    remote = build_knn_graph(vectors, 10, exact_limit=100, executor=on_ray)
    assert not local.exact and not remote.exact
    assert on_ray.facts["tasks"]["search_cells"] >= 2
    assert on_ray.facts["tasks"]["assign_cells"] >= 2
    assert np.array_equal(remote.indices, local.indices)
    assert np.abs(remote.distances - local.distances).max() <= 1e-5


def test_training_dynamics_heads_on_ray_give_the_local_margins(executors) -> None:
    """Three seeds' heads in two Ray tasks (2 CPUs) train as the local stacked model does."""
    features, labels = clustered_vectors(900, classes=4)
    labels[:40] = (labels[:40] + 1) % 4
    on_ray = executors()
    config = HeadConfig(epochs=6, early_epoch=2)
    local = training_dynamics(features, labels, 4, 3, config, 50.0, seed=0)
    remote = training_dynamics(features, labels, 4, 3, config, 50.0, seed=0, executor=on_ray)
    assert on_ray.facts["tasks"] == {"train_head_group": 2}
    assert np.ptp(local.aum) > 1.0, "the margins differ between samples: a real comparison"
    assert np.abs(remote.aum - local.aum).max() <= SCORE_TOLERANCE
    assert np.abs(remote.el2n - local.el2n).max() <= SCORE_TOLERANCE
    assert abs(remote.aum_threshold - local.aum_threshold) <= SCORE_TOLERANCE
    assert np.array_equal(remote.aum < remote.aum_threshold, local.aum < local.aum_threshold)
    assert (local.aum[:40] < local.aum_threshold).mean() > 0.5, "planted errors fall below"


def clustered_vectors(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one centre per class (32-d, seeded), and their classes."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, classes, n)
    vectors = rng.normal(size=(classes, 32))[labels] + rng.normal(size=(n, 32)) * 0.8
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def ended_job(dataset, job_id: int, deadline_s: float = 600) -> dict:
    """The job once a real worker has ended it (a generous deadline for a busy machine)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        job = job_store.get_job(dataset["store"], job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end within {deadline_s} s")


def assert_ran_on_the_cluster(dataset, run_id: int, address: str) -> None:
    """The run succeeded on Ray at that address, with the flags of the same audit run here."""
    run = run_record(dataset, run_id)
    assert run["status"] == "succeeded"
    assert (run["config"]["executor"], run["config"]["ray_address"]) == ("ray", address)
    executor = run["summary"]["executor"]
    assert (executor["name"], executor["address"]) == ("ray", address)
    assert executor["tasks"]["decode_files"] > 1
    local = run_audit(dataset["store"], dataset["settings"], dataset["id"],
                      {**run["config"], "executor": "local", "ray_address": ""})
    assert scores(dataset, run_id)["is_issue"].equals(scores(dataset, local)["is_issue"])


def run_cli(dataset, *arguments: str) -> subprocess.CompletedProcess:
    """``python -m audit ARGUMENTS`` in its own process on the dataset's data home (loader
    workers off); the workers it started are killed afterwards; it must succeed."""
    env = {**os.environ, "AUDIT_DATA_HOME": str(dataset["home"]),
           "AUDIT_CONFIG": str(dataset["home"] / "absent.toml"), "AUDIT_LOADER_WORKERS": "0"}
    try:
        done = subprocess.run([sys.executable, "-m", "audit", *arguments], cwd=PROJECT_ROOT,
                              env=env, capture_output=True, text=True, timeout=900)
    finally:
        kill_workers_of(dataset["home"])
    assert done.returncode == 0, done.stderr
    return done


def test_the_cli_queues_an_audit_that_a_worker_runs_on_the_cluster(cluster, dataset) -> None:
    """``python -m audit run --executor ray --ray-address`` in its own process: it queues the
    job, starts a worker process, which joins the running cluster as a Ray driver."""
    address = ray.get_runtime_context().gcs_address
    shutil.rmtree(dataset["home"] / "embeddings", ignore_errors=True)
    done = run_cli(dataset, "run", "colours", "--wait", "--executor", "ray", "--ray-address",
                   address, "--embedder", "pixels", "--probe", "logistic", "--folds", "2",
                   "--k", "5", "--detectors", ",".join(AUDITED["detectors"]))
    run_id = int(done.stdout.strip().splitlines()[-1].rsplit("run ", 1)[1])
    assert_ran_on_the_cluster(dataset, run_id, address)


INGESTED_FACTS = ["path", "label", "sha256", "width", "height", "file_size", "load_error"]


def test_ingestion_reads_and_hashes_the_images_in_a_ray_data_pipeline(executors, dataset,
                                                                      tmp_path,
                                                                      monkeypatch) -> None:
    """Each image's size, sha256 and decodability, batch by batch in a Ray Data pipeline
    (batches of at most 40 here), are the facts the local threads find, a broken file
    included."""
    monkeypatch.setattr(ingest_module, "INSPECT_BATCH", 40)
    source = tmp_path / "colours"
    write_images(source)
    (source / "red" / "broken.png").write_bytes(b"not a png")
    on_ray = executors()
    remote = ingest(dataset["store"], source, dataset["settings"], name="read on ray",
                    executor=on_ray)
    local = ingest(dataset["store"], source, dataset["settings"], name="read here")
    remote_rows, local_rows = (dataset_store.samples_frame(dataset["store"], d)[INGESTED_FACTS]
                               for d in (remote, local))
    assert on_ray.facts["tasks"] == {"inspect_batch": len(row_ranges(len(local_rows), 2, 40))}
    assert remote_rows.equals(local_rows)
    assert local_rows["sha256"].nunique() == len(local_rows) - 1       # the copy
    broken = local_rows.set_index("path").loc["red/broken.png"]
    assert broken["load_error"] and broken["sha256"] is not None


def test_the_cli_ingests_with_the_ray_executor_on_the_cluster(cluster, dataset,
                                                              tmp_path) -> None:
    """``python -m audit ingest --executor ray --ray-address``: the worker process it starts
    joins the cluster, and the job's result says the images were read there."""
    address = ray.get_runtime_context().gcs_address
    source = tmp_path / "colours"
    write_images(source)
    run_cli(dataset, "ingest", str(source), "--name", "cli on ray", "--executor", "ray",
            "--ray-address", address)
    job = job_store.list_jobs(dataset["store"], limit=1).iloc[0]
    result = job_store.get_job(dataset["store"], int(job["id"]))["result"]
    assert (result["executor"]["name"], result["executor"]["address"]) == ("ray", address)
    assert result["executor"]["tasks"]["inspect_batch"] >= 2
    samples = dataset_store.samples_frame(dataset["store"], result["dataset_id"])
    assert len(samples) == 3 * PER_CLASS + len(MISLABELLED) + 1
    assert samples["load_error"].isna().all()


def test_the_dashboards_queue_runs_an_audit_on_the_cluster(cluster, dataset, monkeypatch) -> None:
    """The Datasets page's "Start an audit" with the Ray executor and the cluster's address; the
    worker process it starts runs the job on the cluster."""
    address = ray.get_runtime_context().gcs_address
    shutil.rmtree(dataset["home"] / "embeddings", ignore_errors=True)
    for name, value in {"AUDIT_DATA_HOME": str(dataset["home"]), "AUDIT_LOADER_WORKERS": "0",
                        "AUDIT_CONFIG": str(dataset["home"] / "absent.toml")}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("pages/datasets.py").run()
    assert at.selectbox(key="audit_executor").value == "local"     # the settings' default
    at.selectbox(key="audit_executor").set_value("ray")
    at.text_input(key="audit_ray_address").set_value(address)
    next(s for s in at.selectbox if s.label == "Embedder").set_value("pixels")
    at.multiselect(key="audit_detectors").set_value(AUDITED["detectors"])
    for label, value in (("Neighbours (k)", 5), ("Folds", 2)):
        next(n for n in at.number_input if n.label == label).set_value(value)
    try:
        next(b for b in at.button if b.label == "Queue audit").click().run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        job_id = int(re.search(r"Queued job (\d+)", at.success[0].value).group(1))
        job = ended_job(dataset, job_id)
    finally:
        kill_workers_of(dataset["home"])
    assert job["status"] == "succeeded", job["error"]
    assert_ran_on_the_cluster(dataset, job["run_id"], address)


def test_an_unknown_executor_is_a_one_line_error(dataset, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match=r"executor='dask'.*local, ray"):
        load_settings(toml_path=dataset["home"] / "absent.toml", env={"AUDIT_EXECUTOR": "dask"})
    with pytest.raises(ConfigError, match=r"unknown executor 'dask'; choose one of local, ray"):
        AuditConfig.from_dict({"executor": "dask"}, dataset["settings"])

    monkeypatch.setenv("AUDIT_DATA_HOME", str(dataset["home"]))
    monkeypatch.setenv("AUDIT_CONFIG", str(dataset["home"] / "absent.toml"))
    for command in (["run", "colours"], ["ingest", str(dataset["home"])]):
        assert main([*command, "--executor", "dask"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "'dask'" in error and "local, ray" in error
    monkeypatch.setenv("AUDIT_EXECUTOR", "dask")
    assert main(["datasets"]) == 2
    assert "executor='dask'" in capsys.readouterr().err

def test_the_cli_passes_the_executor_and_the_light_paths_never_import_ray(dataset) -> None:
    args = build_parser().parse_args(["run", "colours", "--executor", "ray",
                                      "--ray-address", "auto"])
    assert _config_overrides(args) == {"executor": "ray", "ray_address": "auto"}
    script = ("import sys\nfrom pathlib import Path\nimport audit.cli, audit.plan\n"
              "from audit.config import AuditConfig\nfrom audit.settings import load_settings\n"
              "settings = load_settings(toml_path=Path('absent.toml'), env={})\n"
              "AuditConfig.from_dict({'executor': 'ray'}, settings)\n"
              "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
