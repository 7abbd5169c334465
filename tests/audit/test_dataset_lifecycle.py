"""Dataset lifecycle (issue 11): delete a dataset (every row of it, the caches of its images,
never the images), refused while a job of it is queued or running and confirmed on the command
line; re-ingest a changed folder as a new version that keeps the decisions of unchanged files;
a warning when one folder is ingested twice. Real stores, real image files, real processes."""

from __future__ import annotations

import hashlib
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.dataset_lifecycle import delete_dataset
from audit.ingest import ingest
from audit.embedders.cache import EmbeddingCache
from audit.errors import InputError, NotFoundError
from audit.store import jobs as job_store
from audit.store import runs as run_store
from audit.store.datasets import get_dataset, list_datasets, samples_frame
from audit.store.explore import ensure_explore_index
from audit.store.exports import record_export
from audit.store.flags import Decision, current_decisions, decision_log, record_decisions
from audit.store.neighbours import write_neighbours
from audit.store.saved_views import save_view
from audit.thumbnails import GRID_SIZE, LARGE_SIZE, thumbnail, thumbnail_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _pets(folder: Path) -> Path:
    for i, label in enumerate(["cat", "dog", "cat", "dog", "cat"]):
        _image(folder / label / f"{i}.png", (40 * i, 10, 200 - 30 * i))
    return folder


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(env: dict, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], env=env, cwd=PROJECT_ROOT,
                          stdin=stdin, capture_output=True, text=True, timeout=300)


def _scored_run(store, dataset_id: int) -> int:
    samples = samples_frame(store, dataset_id)
    run_id = run_store.create_run(store, dataset_id, {"detectors": ["outlier"]})
    run_store.write_scores(store, run_id, pd.DataFrame({
        "sample_id": samples["sample_id"], "detector": "outlier", "score": 0.5,
        "is_issue": False, "details": "{}"}))
    facts = pd.DataFrame({column: None for column in run_store.RUN_SAMPLE_COLUMNS},
                         index=samples.index)
    facts["sample_id"] = samples["sample_id"]
    run_store.write_run_samples(store, run_id, facts)
    ids = samples["sample_id"].tolist()
    nearest = np.array([[(i + 1) % len(ids)] for i in range(len(ids))])
    write_neighbours(store, run_id, ids, nearest, np.zeros(nearest.shape))
    run_store.finish_run(store, run_id, "succeeded")
    ensure_explore_index(store, run_id)
    return run_id


def _rows_of(store, dataset_id: int, run_ids: list[int]) -> dict[str, int]:
    """Per table holding a dataset_id or run_id: its rows of this dataset or these runs."""
    with store.transaction() as con:
        columns = con.execute(
            "SELECT table_name, list(column_name) FROM information_schema.columns "
            "WHERE column_name IN ('dataset_id', 'run_id') OR (table_name = 'datasets' "
            "AND column_name = 'id') GROUP BY table_name").fetchall()
        counts = {}
        for table, names in columns:
            conditions, values = [], {}
            if "dataset_id" in names or table == "datasets":
                conditions.append("id = $dataset" if table == "datasets"
                                  else "dataset_id = $dataset")
                values["dataset"] = dataset_id
            if "run_id" in names:
                conditions.append("list_contains($runs, run_id)")
                values["runs"] = [int(run_id) for run_id in run_ids]
            counts[table] = con.execute(
                f"SELECT count(*) FROM {table} WHERE {' OR '.join(conditions)}", values
            ).fetchone()[0]
    return counts


@pytest.mark.reliability
def test_delete_removes_every_row_and_cached_file_of_the_dataset_but_no_image(
        store, settings, data_home, tmp_path):
    pets = _pets(tmp_path / "pets")
    other = tmp_path / "other"
    (other / "cat").mkdir(parents=True)
    (other / "cat" / "same.png").write_bytes((pets / "cat" / "0.png").read_bytes())  # shared
    _image(other / "dog" / "own.png", (1, 2, 3))
    pets_id = ingest(store, pets, settings, name="pets")
    other_id = ingest(store, other, settings, name="other")
    images_before = _fingerprint(pets)

    runs = [_scored_run(store, pets_id), _scored_run(store, pets_id)]
    _scored_run(store, other_id)
    record_decisions(store, pets_id, [Decision("cat/0.png", "remove"),
                                      Decision("dog/1.png", "relabel", "cat")])
    record_decisions(store, other_id, [Decision("cat/same.png", "keep")])
    record_export(store, pets_id, runs[0], str(tmp_path / "out"), "folder", {}, {})
    save_view(store, pets_id, "flips", {"detector": "label_issue"})
    save_view(store, other_id, "flips", {"page": 2})
    finished_job = job_store.insert_job(store, pets_id, "audit", {})
    job_store.claim_next_job(store, os.getpid(), socket.gethostname())
    job_store.finish_job(store, finished_job, "succeeded", result={"run_id": runs[1]})

    pets_hashes = set(samples_frame(store, pets_id)["sha256"])
    other_hashes = set(samples_frame(store, other_id)["sha256"])
    cache = EmbeddingCache(data_home, "some-model")
    every_hash = sorted(pets_hashes | other_hashes)
    cache.store(every_hash, np.arange(len(every_hash) * 3, dtype=np.float32).reshape(-1, 3))
    for dataset_id, root in [(pets_id, pets), (other_id, other)]:
        for sample in samples_frame(store, dataset_id).itertuples():
            for size in (GRID_SIZE, LARGE_SIZE):
                thumbnail(settings, root, sample.path, sample.sha256, size)
    other_rows = _rows_of(store, other_id, list(run_store.list_runs(store, other_id)["id"]))
    assert all(_rows_of(store, pets_id, runs).values())   # every table holds some of pets

    deletion = delete_dataset(store, settings, get_dataset(store, "pets"))

    assert (deletion.samples, deletion.runs, deletion.decisions) == (5, 2, 2)
    left = _rows_of(store, pets_id, runs)
    assert left.pop("jobs") == 1          # the job stays as history: "(deleted dataset N)"
    assert set(left.values()) == {0}, left
    assert job_store.list_jobs(store)["dataset"].tolist() == [f"(deleted dataset {pets_id})"]
    assert _rows_of(store, other_id, list(run_store.list_runs(store, other_id)["id"])) == other_rows
    assert current_decisions(store, other_id)["action"].tolist() == ["keep"]

    gone = pets_hashes - other_hashes
    found, missing = cache.lookup(every_hash)
    assert set(found) == other_hashes
    assert {every_hash[row] for row in missing} == gone
    assert np.array_equal(found[sorted(other_hashes)[0]],
                          np.arange(len(every_hash) * 3).reshape(-1, 3)[
                              every_hash.index(sorted(other_hashes)[0])])
    for size in (GRID_SIZE, LARGE_SIZE):
        assert not any(thumbnail_path(settings, h, size).exists() for h in gone)
        assert all(thumbnail_path(settings, h, size).exists() for h in other_hashes)
    assert deletion.cache_files == 1 + 2 * len(gone)     # one rewritten part, the thumbnails
    assert _fingerprint(pets) == images_before            # every image file is still there
    with pytest.raises(NotFoundError):
        get_dataset(store, "pets")


@pytest.mark.reliability
def test_delete_is_refused_while_a_job_of_the_dataset_is_queued_or_running(
        store, settings, tmp_path):
    dataset_id = ingest(store, _pets(tmp_path / "pets"), settings, name="pets")
    job_id = job_store.insert_job(store, dataset_id, "audit", {})
    with pytest.raises(InputError, match=rf"dataset 'pets' has job {job_id} queued; cancel it "
                                         rf"with `python -m audit cancel {job_id}`"):
        delete_dataset(store, settings, get_dataset(store, dataset_id))
    job_store.claim_next_job(store, os.getpid(), socket.gethostname())
    with pytest.raises(InputError, match=f"has job {job_id} running"):
        delete_dataset(store, settings, get_dataset(store, dataset_id))
    assert len(samples_frame(store, dataset_id)) == 5            # nothing was deleted
    job_store.finish_job(store, job_id, "cancelled")
    delete_dataset(store, settings, get_dataset(store, dataset_id))
    assert list_datasets(store).empty


def test_the_command_line_asks_for_the_name_and_refuses_without_a_terminal(
        subprocess_env, store, settings, tmp_path):
    pets = _pets(tmp_path / "pets")
    assert _cli(subprocess_env, "ingest", str(pets), "--name", "pets").returncode == 0

    scripted = _cli(subprocess_env, "delete", "pets")
    assert scripted.returncode == 2
    assert scripted.stderr.strip() == ("error: not deleting dataset 'pets' without a "
                                       "confirmation; pass --yes to delete it from a script")
    assert _typed_at_terminal(subprocess_env, "pet\n").returncode == 1
    assert get_dataset(store, "pets").name == "pets"

    confirmed = _typed_at_terminal(subprocess_env, "pets\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "Type the dataset's name to delete it" in confirmed.stdout
    assert "deleted dataset 'pets' (id 1): 5 samples" in confirmed.stdout
    assert f"the files in {pets.resolve()} were not touched" in confirmed.stdout
    assert list_datasets(store).empty and len(_fingerprint(pets)) == 5

    assert _cli(subprocess_env, "ingest", str(pets), "--name", "pets").returncode == 0
    assert _cli(subprocess_env, "delete", "pets", "--yes").returncode == 0
    assert list_datasets(store).empty


def _typed_at_terminal(env: dict, text: str) -> subprocess.CompletedProcess:
    """`delete pets` with a terminal as its stdin, where ``text`` is typed."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, text.encode())
        return _cli(env, "delete", "pets", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.reliability
def test_a_new_version_keeps_the_decisions_of_unchanged_files_only(subprocess_env, store,
                                                                   tmp_path):
    pets = _pets(tmp_path / "pets")
    assert _cli(subprocess_env, "ingest", str(pets), "--name", "pets").returncode == 0
    record_decisions(store, 1, [
        Decision("cat/0.png", "remove"), Decision("cat/0.png", "undo"),       # unchanged:
        Decision("dog/1.png", "remove", note="blurry"),                       #   carried
        Decision("cat/0.png", "relabel", "dog"), Decision("cat/0.png", "keep"),
        Decision("cat/0.png", "undo"),                                        #   relabel stands
        Decision("cat/2.png", "remove"),                                      # changed: dropped
        Decision("dog/3.png", "keep"),                                        # gone: dropped
    ])
    _image(pets / "cat" / "2.png", (9, 9, 9))
    (pets / "dog" / "3.png").unlink()
    _image(pets / "dog" / "5.png", (7, 7, 7))
    before = current_decisions(store, 1)

    result = _cli(subprocess_env, "ingest", str(pets), "--name", "pets", "--new-version")

    assert result.returncode == 0, result.stderr
    assert ("'pets' is now version 2 (id 2); the previous version is 'pets@v1' (id 1). "
            "Decisions carried over from unchanged files: 2; dropped (file changed or gone): 2"
            ) in result.stdout
    assert "warning" not in result.stderr
    new, old = get_dataset(store, "pets"), get_dataset(store, "pets@v1")
    assert (new.id, new.version, new.parent_id, old.id, old.version) == (2, 2, 1, 1, 1)
    carried = current_decisions(store, new.id)
    assert carried.drop(columns="created_at").fillna("-").to_dict("records") == [
        {"sample_id": "cat/0.png", "action": "relabel", "new_label": "dog", "note": "-"},
        {"sample_id": "dog/1.png", "action": "remove", "new_label": "-", "note": "blurry"},
    ]
    history = decision_log(store, new.id, "cat/0.png")
    assert history["action"].tolist() == ["remove", "undo", "relabel", "keep", "undo"]
    assert current_decisions(store, old.id).equals(before)        # the old version is unchanged

    listing = _cli(subprocess_env, "datasets").stdout.splitlines()
    assert listing[0].split()[:3] == ["id", "name", "version"]
    assert [line.split()[:3] for line in listing[1:]] == [["1", "pets@v1", "1"],
                                                          ["2", "pets", "2"]]
    third = _cli(subprocess_env, "ingest", str(pets), "--new-version")      # default name: pets
    assert "version 3 (id 3); the previous version is 'pets@v2' (id 2)" in third.stdout
    assert "carried over from unchanged files: 2; dropped (file changed or gone): 0" in third.stdout


def test_a_changed_label_is_a_changed_sample(store, settings, tmp_path):
    """In a manifest the label can change while the file does not: its decision is dropped."""
    _pets(tmp_path / "pets")
    manifest = tmp_path / "pets" / "labels.csv"
    manifest.write_text("path,label\ncat/0.png,cat\ncat/2.png,cat\n")
    first = ingest(store, manifest, settings, name="labels")
    record_decisions(store, first, [Decision("cat/0.png", "keep"), Decision("cat/2.png", "keep")])
    manifest.write_text("path,label\ncat/0.png,cat\ncat/2.png,dog\n")
    second = ingest(store, manifest, settings, name="labels", new_version=True)
    assert current_decisions(store, second)["sample_id"].tolist() == ["cat/0.png"]
    record = get_dataset(store, second)
    assert (record.carried_decisions, record.dropped_decisions) == (1, 1)


def test_a_new_version_needs_the_newest_version_of_an_existing_dataset(store, settings,
                                                                       tmp_path):
    pets = _pets(tmp_path / "pets")
    with pytest.raises(NotFoundError, match="no dataset named 'pets' to make a new version of"):
        ingest(store, pets, settings, name="pets", new_version=True)
    ingest(store, pets, settings, name="pets")
    ingest(store, pets, settings, name="pets", new_version=True)
    with pytest.raises(InputError, match="'pets@v1' already has a newer version 'pets'"):
        ingest(store, pets, settings, name="pets@v1", new_version=True)
    assert list_datasets(store)["name"].tolist() == ["pets@v1", "pets"]


def test_ingesting_a_folder_twice_warns_and_names_the_way_to_a_version(subprocess_env,
                                                                       tmp_path):
    pets = _pets(tmp_path / "pets")
    first = _cli(subprocess_env, "ingest", str(pets), "--name", "pets")
    assert first.returncode == 0 and "warning" not in first.stderr
    again = _cli(subprocess_env, "ingest", str(tmp_path / "." / "pets"), "--name", "pets2")
    assert again.returncode == 0
    assert (f"warning: {pets.resolve()} was already ingested as dataset 'pets' (id 1); 'pets2' "
            "is a separate dataset that starts with no decisions") in again.stderr
    assert f"python -m audit ingest {pets.resolve()} --name pets --new-version" in again.stderr
    same_name = _cli(subprocess_env, "ingest", str(pets), "--name", "pets")
    assert same_name.returncode == 2
    assert ("--new-version, or delete it with `python -m audit delete pets`"
            in same_name.stderr)
