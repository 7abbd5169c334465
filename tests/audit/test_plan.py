"""The audit plan end to end on real files and a real DuckDB store, with test detectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit import principal
from audit.ingest import ingest
from audit.embedders import auto_choice
from audit.detectors.base import REGISTRY, Detector, result_frame
from audit.errors import Cancelled, ConfigError, InputError
from audit.config import AuditConfig
from audit.plan import check_result, detector_order, run_audit
from audit.sample_table import SampleTable
from audit.store import runs
from audit.store.explore import ensure_explore_index, explore_page, opening_filters
from audit.supplied import load_embeddings, load_pred_probs
from audit.thumbnails import GRID_SIZE, thumbnail_path
from tests.audit.detector_inputs import make_inputs
from tests.audit.manifests import write_manifest

RED, BLUE = (200, 40, 30), (30, 60, 210)
FLIPPED = ["r03", "r11", "b07"]


class AgreeDetector(Detector):
    name = "t_agree"
    family, suggests_labels, belief = "label", True, "held_out"
    requires = frozenset({"knn", "labels"})
    params = {"threshold": 0.5}

    def score(self, inputs, params, progress):
        agree = (inputs.labels[inputs.knn.indices] == inputs.labels[:, None]).mean(axis=1)
        details = [{"agree": a, "neighbours": inputs.knn.indices[i, :2]} for i, a in enumerate(agree)]
        return result_frame(inputs, agree, agree < params["threshold"], details)


class ConfidenceDetector(Detector):
    name = "t_confidence"
    family = "label"
    requires = frozenset({"pred_probs", "labels"})

    def score(self, inputs, params, progress):
        own = inputs.pred_probs[np.arange(inputs.n), inputs.labels]
        return result_frame(inputs, own, own < 0.5)


class CombinedDetector(Detector):
    name = "t_combined"
    family = "outlier"
    after = ("t_agree", "t_confidence")

    def score(self, inputs, params, progress):
        agree, own = (inputs.prior_scores[n]["score"].to_numpy() for n in self.after)
        return result_frame(inputs, np.minimum(agree, own), np.minimum(agree, own) < 0.5)


class BoomDetector(Detector):
    name = "t_boom"
    family = "quality"

    def score(self, inputs, params, progress):
        raise RuntimeError("boom on purpose")


class CaptionDetector(Detector):
    name = "t_captions"
    family = "consistency"
    requires = frozenset({"captions"})


TEST_DETECTORS = [AgreeDetector, ConfidenceDetector, CombinedDetector, BoomDetector,
                  CaptionDetector]
ALL_TEST = [d.name for d in TEST_DETECTORS]


@pytest.fixture(autouse=True)
def test_detectors(monkeypatch):
    """Register the test detectors for one test; monkeypatch removes them afterwards."""
    for detector in TEST_DETECTORS:
        monkeypatch.setitem(REGISTRY, detector.name, detector)


def write_dataset(folder: Path, n_each: int = 15, broken: int = 1, one_class: bool = False,
                  seed: int = 0) -> Path:
    """Red and blue noisy squares (labels 'red'/'blue'), three labels flipped, broken files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for prefix, colour, label in (("r", RED, "red"), ("b", BLUE, "blue")):
        for i in range(n_each):
            sample_id = f"{prefix}{i:02d}"
            pixels = np.clip(np.array(colour) + rng.normal(0, 15, (20, 20, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{sample_id}.png")
            given = ("blue" if label == "red" else "red") if sample_id in FLIPPED else label
            rows.append({"id": sample_id, "path": f"{sample_id}.png",
                         "label": "red" if one_class else given})
    return write_manifest(folder, rows, broken, broken_label="red")


@pytest.fixture
def dataset_id(store, settings, tmp_path) -> int:
    return ingest(store, write_dataset(tmp_path / "colours"), settings, name="colours")


def quick(**overrides) -> dict:
    return {"detectors": ALL_TEST, "embedder": "pixels", "k": 5, "loader_workers": 0,
            **overrides}


def test_config_defaults_come_from_settings_and_round_trip(settings):
    config = AuditConfig.from_dict({"k": 7}, settings)
    assert config.k == 7 and config.folds == settings.folds and config.embedder == "auto"
    assert set(ALL_TEST) <= set(config.detectors) and config.detectors == sorted(config.detectors)
    assert AuditConfig.from_dict(config.to_dict(), settings) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


@pytest.mark.parametrize("overrides, named", [
    ({"detectors": ["t_agree", "nope"]}, "nope"),
    ({"embedder": "vit"}, "vit"),
    ({"device": "tpu"}, "tpu"),
    ({"k": 0}, "k=0"),
    ({"folds": 1}, "folds=1"),
    ({"colour": "red"}, "colour"),
    ({"params": {"t_agree": {"bogus": 1}}}, "bogus"),
    ({"params": {"nobody": {}}}, "nobody"),
])
def test_config_rejects_bad_values_by_name(settings, overrides, named):
    with pytest.raises(ConfigError, match=named):
        AuditConfig.from_dict(overrides, settings)


def test_detectors_run_after_what_they_read():
    order = detector_order(["t_combined", "t_confidence", "t_agree"])
    assert order.index("t_combined") > max(order.index("t_agree"), order.index("t_confidence"))


def test_run_writes_scores_skips_and_provenance(store, settings, dataset_id):
    messages, statuses = [], []

    def log(message: str) -> None:
        messages.append(message)
        if message.startswith("detector:t_agree took"):
            statuses.append(runs.get_run(store, run_id_box[0])["status"])

    run_id_box = [max(runs.list_runs(store, dataset_id)["id"], default=0) + 1]
    fractions = []
    run_id = run_audit(store, settings, dataset_id, quick(), progress=lambda f, m: fractions.append(f),
                       log=log)
    assert run_id == run_id_box[0] and statuses == ["running"]
    run = runs.get_run(store, run_id)
    assert run["status"] == "succeeded"
    with store.transaction() as con:      # indexed by the worker, not by the first page
        assert con.execute("SELECT count(*) FROM explore_runs WHERE run_id = ?",
                           [run_id]).fetchone()[0] == 1
    opening = explore_page(store, dataset_id, run_id, opening_filters(
        ensure_explore_index(store, run_id))).rows      # and its opening page's thumbnails
    readable = opening[opening["load_error"].isna()]
    assert len(readable) > 0 and all(thumbnail_path(settings, sha, GRID_SIZE).is_file()
                                     for sha in readable["sha256"])
    skipped, notes = json.loads(run["skipped"]), json.loads(run["notes"])
    assert "boom on purpose" in skipped["t_boom"] and "captions" in skipped["t_captions"]
    assert notes["samples"].startswith("1 of 31 samples")
    assert "samples" not in skipped
    scores = runs.scores_frame(store, run_id)
    assert sorted(scores["detector"].unique()) == ["t_agree", "t_combined", "t_confidence"]
    assert (scores.groupby("detector").size() == 30).all()
    agree = scores[scores["detector"] == "t_agree"].set_index("sample_id")
    assert set(agree["score"].nsmallest(3).index) == set(FLIPPED)
    assert json.loads(agree.loc["r03", "details"])["agree"] == agree.loc["r03", "score"]
    combined = scores[scores["detector"] == "t_combined"].set_index("sample_id")
    assert set(combined.index[combined["is_issue"]]) == set(FLIPPED)
    facts = runs.run_samples_frame(store, run_id).set_index("sample_id")
    assert len(facts) == 30 and set(facts["fold"]) == set(range(5))
    assert facts.loc[FLIPPED, "predicted_label"].tolist() == ["red", "red", "blue"]
    assert facts["map_x"].std() > 0
    assert json.loads(run["model_ids"]) == {"embedder": "pixels-32px-pca64",
                                            "pred_probs": "mlp-probe-5fold"}
    summary = json.loads(run["summary"])
    assert summary["embedder"]["name"] == "pixels" and summary["embedder"]["why"] is None
    assert summary["pred_probs"]["source"] == "cross-fitted mlp probe, 5 folds"
    assert 0.5 < summary["pred_probs"]["agreement_with_labels"] <= 1.0
    assert {"load", "embed", "probe", "knn", "detector:t_agree"} <= set(json.loads(run["timings"]))
    versions = json.loads(run["versions"])
    assert versions["torch"] and versions["duckdb"] and versions["python"] and run["code_version"]
    assert summary["detectors"] == {
        "t_agree": {"family": "label", "suggests_labels": True, "belief": "held_out"},
        "t_combined": {"family": "outlier", "suggests_labels": False, "belief": None},
        "t_confidence": {"family": "label", "suggests_labels": False, "belief": None}}
    assert runs.run_detector_facts(store, run_id) == summary["detectors"]
    assert any(m.startswith("skipped t_boom: failed: RuntimeError") for m in messages)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.parametrize("min_z", [auto_choice.MIN_Z, -np.inf], ids=["measured", "pixels-forced"])
def test_auto_records_both_agreements_and_uses_the_vectors_it_names(store, settings, dataset_id,
                                                                     monkeypatch, min_z):
    monkeypatch.setattr(auto_choice, "MIN_Z", min_z)
    run_id = run_audit(store, settings, dataset_id, quick(detectors=["t_agree"], embedder="auto"))
    run = runs.get_run(store, run_id)
    embedder = json.loads(run["summary"])["embedder"]
    agreement = embedder["label_agreement"]
    assert agreement["rows"] == 30 and 0.8 <= agreement["imagenet"] <= 1.0
    chosen = "pixels" if agreement["z"] > min_z else "imagenet"
    assert embedder["name"] == chosen and embedder["asked_for"] == "auto"
    assert json.loads(run["model_ids"])["embedder"].startswith(chosen)
    notes = json.loads(run["notes"])
    assert ("embedding choice" in notes) == (chosen == "pixels")
    assert ("pixels chosen over imagenet" in (embedder["why"] or "")) == (chosen == "pixels")


def test_rerun_with_other_params_reuses_cached_embeddings(store, settings, dataset_id):
    first = run_audit(store, settings, dataset_id, quick(detectors=["t_agree"]))
    cached = sorted((settings.data_home / "embeddings").rglob("part-*.npy"))
    second = run_audit(store, settings, dataset_id,
                       quick(detectors=["t_agree"], params={"t_agree": {"threshold": 0.95}}))
    assert sorted((settings.data_home / "embeddings").rglob("part-*.npy")) == cached
    issues = [runs.scores_frame(store, r)["is_issue"].sum() for r in (first, second)]
    assert second == first + 1 and issues[1] > issues[0]


def test_cancel_between_stages_marks_the_run_cancelled(store, settings, dataset_id):
    polls = []
    with pytest.raises(Cancelled):
        run_audit(store, settings, dataset_id, quick(),
                  should_cancel=lambda: polls.append(1) or len(polls) > 2)
    listed = runs.list_runs(store, dataset_id)
    assert listed["status"].tolist() == ["cancelled"]
    assert runs.scores_frame(store, int(listed["id"].iloc[0])).empty


def test_the_probe_and_the_outlier_detector_share_one_fit_of_the_principal_axes(
        store, settings, dataset_id, monkeypatch):
    fitted, fit = [], principal.principal_axes

    def counted(x, *args, **kwargs):
        fitted.append(x.shape)
        return fit(x, *args, **kwargs)

    monkeypatch.setattr(principal, "principal_axes", counted)
    run_id = run_audit(store, settings, dataset_id, quick(detectors=["outlier", "t_confidence"]))
    scores = runs.scores_frame(store, run_id)
    assert scores.groupby("detector").size().to_dict() == {"outlier": 30, "t_confidence": 30}
    assert len(fitted) == 1 and fitted[0][0] == 30      # once, on the 30 readable samples


def test_supplied_embeddings_and_pred_probs_replace_the_models(store, settings, dataset_id,
                                                               tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(31, 6))            # one row per sample, broken one included
    probs = np.full((31, 2), 0.5)
    probs[[4, 20]] = [[0.96, 0.04], [0.03, 0.97]]    # rows 4 (r04, red) and 20 (b05, blue)
    np.save(tmp_path / "emb.npy", embeddings)
    np.save(tmp_path / "probs.npy", probs)
    run_id = run_audit(store, settings, dataset_id, quick(
        detectors=["t_confidence"], embeddings_file=str(tmp_path / "emb.npy"),
        pred_probs_file=str(tmp_path / "probs.npy")))
    run = runs.get_run(store, run_id)
    assert json.loads(run["model_ids"]) == {"embedder": "supplied:emb.npy",
                                            "pred_probs": "supplied:probs.npy"}
    scores = runs.scores_frame(store, run_id).set_index("sample_id")["score"]
    # class names sort as ['blue', 'red']: r04 is red (column 1), b05 blue (column 0)
    assert scores["r04"] == pytest.approx(0.04) and scores["b05"] == pytest.approx(0.03)
    assert runs.run_samples_frame(store, run_id)["fold"].isna().all()


def test_supplied_rows_are_those_of_the_audited_samples_and_never_copied_when_all_are():
    """A supplied file has one row per dataset row; an unreadable sample's row is dropped,
    and with every sample audited the file's own array is used (no second copy)."""
    whole = np.arange(10.0).reshape(5, 2)
    some = SampleTable(pd.DataFrame({"row_index": [0, 2, 3, 4]}), Path("."), [], total=5)
    assert some.audited_rows(whole).tolist() == [[0, 1], [4, 5], [6, 7], [8, 9]]
    every = SampleTable(pd.DataFrame({"row_index": [0, 1, 2, 3, 4]}), Path("."), [], total=5)
    assert every.audited_rows(whole) is whole


@pytest.mark.parametrize("array, named", [
    (np.full((31, 2), 0.5).tolist()[:30], "shape (30, 2), expected (31, 2)"),
    ([[0.5, 0.5]] * 30 + [[np.nan, 0.5]], "NaN or infinite values in 1 row"),
    ([[0.5, 0.5]] * 30 + [[0.9, 0.5]], "row 30 sums to 1.4000"),
    ([[0.2, 0.3, 0.5]] * 31, "3 columns but the dataset has 2 classes"),
    ([[1.5, -0.5]] * 31, "negative value"),
])
def test_bad_pred_probs_fail_the_run_with_the_file_named(store, settings, dataset_id, tmp_path,
                                                         array, named):
    path = tmp_path / "bad_probs.npy"
    np.save(path, np.array(array, dtype=np.float64))
    with pytest.raises(InputError, match="bad_probs.npy") as caught:
        run_audit(store, settings, dataset_id, quick(pred_probs_file=str(path)))
    assert named in str(caught.value)
    run = runs.list_runs(store, dataset_id).iloc[-1]
    assert run["status"] == "failed" and "bad_probs.npy" in run["error"]


def test_supplied_embeddings_are_checked(tmp_path):
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf], [0.0, 1.0]]))
    np.save(tmp_path / "zero.npy", np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="inf.npy: embeddings row 0 has a NaN or infinite value"):
        load_embeddings(tmp_path / "inf.npy", 2)
    with pytest.raises(InputError, match="row 1 is all zeros"):
        load_embeddings(tmp_path / "zero.npy", 2)
    with pytest.raises(InputError, match="objects.npy: not a readable .npy array without pickle"):
        load_embeddings(tmp_path / "objects.npy", 1)
    with pytest.raises(InputError, match="missing.npy: embeddings file not found"):
        load_embeddings(tmp_path / "missing.npy", 2)
    np.save(tmp_path / "near.npy", np.array([[0.4999, 0.5]]))
    np.testing.assert_allclose(load_pred_probs(tmp_path / "near.npy", 1, 2).sum(), 1.0)


def test_single_class_dataset_skips_label_checks_with_the_reason(store, settings, tmp_path):
    dataset = ingest(store, write_dataset(tmp_path / "mono", one_class=True, broken=0), settings)
    run_id = run_audit(store, settings, dataset, quick(detectors=["t_agree", "t_confidence"]))
    run = runs.get_run(store, run_id)
    skipped = json.loads(run["skipped"])
    assert run["status"] == "succeeded" and "at least two classes" in json.loads(run["notes"])["pred_probs"]
    assert "pred_probs" in skipped["t_confidence"]
    assert (runs.scores_frame(store, run_id)["score"] == 1.0).all()   # everyone agrees


def test_tiny_dataset_clips_k_and_folds(store, settings, tmp_path):
    dataset = ingest(store, write_dataset(tmp_path / "tiny", n_each=2, broken=0), settings)
    run_id = run_audit(store, settings, dataset, quick(detectors=["t_agree"], k=10, folds=5))
    run = runs.get_run(store, run_id)
    assert run["status"] == "succeeded"
    assert "folds reduced from 5 to 4" in json.loads(run["notes"])["probe"]
    details = runs.scores_frame(store, run_id)["details"].map(json.loads)
    assert details.map(lambda d: len(d["neighbours"])).eq(2).all()


def test_all_images_unreadable_is_a_clear_error(store, settings, tmp_path):
    folder = tmp_path / "broken"
    write_dataset(folder, n_each=0, broken=3)
    dataset = ingest(store, folder / "manifest.csv", settings)
    with pytest.raises(InputError, match="none of its 3 images could be read"):
        run_audit(store, settings, dataset, quick())
    assert runs.list_runs(store, dataset)["status"].tolist() == ["failed"]


def test_demo_end_to_end_with_every_registered_detector(store, settings, tmp_path):
    from audit.demo import generate_demo

    manifest, truth_path = generate_demo(tmp_path / "demo", seed=0)
    truth = json.loads(truth_path.read_text())
    dataset = ingest(store, manifest, settings, name="demo")
    real = sorted(set(REGISTRY) - set(ALL_TEST))
    run_id = run_audit(store, settings, dataset, {"detectors": real, "embedder": "pixels"})
    run = runs.get_run(store, run_id)
    skipped = json.loads(run["skipped"])
    assert run["status"] == "succeeded"
    scores = runs.scores_frame(store, run_id)
    written = set(scores["detector"])
    assert written | {n for n in real if n in skipped} == set(real)
    assert (scores.groupby("detector").size() == 1827).all()   # 2 unreadable files left out
    facts = runs.run_samples_frame(store, run_id).set_index("sample_id")
    flips = pd.Series(truth["label_flip"])
    frame = pd.read_csv(manifest).set_index("id")
    disagree = facts.loc[flips.index, "predicted_label"] != frame.loc[flips.index, "label"]
    assert disagree.mean() > 0.8          # the probe is out-of-sample: it does not learn the flips
    estimate = json.loads(run["summary"])["overall"]
    assert abs(estimate["estimated_label_errors"] - len(flips)) <= 0.3 * len(flips)
    low, high = estimate["interval_90"]
    assert low <= estimate["estimated_label_errors"] <= high == max(low, high)



def test_a_result_out_of_row_order_or_short_is_refused():
    """A detector's rows must be the inputs' samples in their order: reversed, one short or
    one id changed is an error naming the detector; the same rows in order pass."""
    inputs = make_inputs(np.array([0, 1, 0, 1]))
    good = result_frame(inputs, np.full(4, 0.5), np.zeros(4, dtype=bool))
    check_result("fine", good, inputs)
    renamed = good.assign(sample_id=["s000", "s001", "s002", "x"])
    for bad in (good.iloc[::-1], good.iloc[:3], renamed):
        with pytest.raises(ValueError, match="disordered returned rows that are not one per"):
            check_result("disordered", bad, inputs)
