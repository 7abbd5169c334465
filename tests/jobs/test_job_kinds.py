"""Ingest and export are job kinds like the audit (issue 13): queued after the checks that need
no work, run by the worker through ``KINDS``, ended with a JSON result; a cancel asked while
they run leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from audit.errors import InputError
from audit.export import ExportRules
from audit.store import jobs as job_store
from audit.store.datasets import list_datasets
from audit.store.exports import list_exports
from jobs.kinds import KINDS
from jobs.queue import enqueue_export, enqueue_ingest, get_job
from jobs.worker import work
from tests.jobs.conftest import write_image_folder


@pytest.fixture
def no_detached_worker(monkeypatch):
    """This test runs the worker loop itself (a real one, in this process)."""
    monkeypatch.setattr("jobs.queue.ensure_worker", lambda settings: None)


def test_an_ingest_job_makes_the_dataset_and_says_which(store, settings, tmp_path,
                                                        no_detached_worker):
    folder = write_image_folder(tmp_path / "pets", classes=2, per_class=4)
    job_id = enqueue_ingest(store, settings, folder, name="pets",
                            columns={"image": "image", "label": "label", "caption": None})
    assert list_datasets(store).empty                      # queued, nothing ingested yet
    assert work(settings, once=True) == 1
    job = get_job(store, job_id, settings)
    (dataset,) = list_datasets(store).itertuples()
    assert (job["status"], job["kind"]) == ("succeeded", "ingest"), job["error"]
    assert job["result"] == {"dataset_id": dataset.id, "executor": {"name": "local"}}
    assert job["dataset_id"] == dataset.id
    assert (dataset.name, dataset.samples) == ("pets", 8)
    assert job["config"]["source"] == str(folder.resolve())
    assert (job["config"]["executor"], job["config"]["ray_address"]) == ("local", "")


def test_bad_input_is_refused_before_anything_is_queued(store, settings, tmp_path,
                                                        make_dataset, no_detached_worker):
    with pytest.raises(InputError, match="nowhere does not exist"):
        enqueue_ingest(store, settings, tmp_path / "nowhere")
    dataset_id = make_dataset()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me\n")
    with pytest.raises(InputError, match="is not empty"):
        enqueue_export(store, settings, dataset_id, taken, "csv", ExportRules().to_dict())
    with pytest.raises(Exception, match="format"):
        enqueue_export(store, settings, dataset_id, tmp_path / "out", "tiff",
                       ExportRules().to_dict())
    assert job_store.list_jobs(store).empty


def test_an_export_job_writes_the_folder_and_its_summary(store, settings, tmp_path,
                                                         make_dataset, no_detached_worker):
    dataset_id = make_dataset(classes=2, per_class=3)
    job_id = enqueue_export(store, settings, dataset_id, tmp_path / "out", "csv",
                            ExportRules().to_dict())
    assert not (tmp_path / "out").exists()
    assert work(settings, once=True) == 1
    job = get_job(store, job_id, settings)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["out_dir"] == str((tmp_path / "out").resolve())
    assert result["rows_written"] == 6 and result["summary"].startswith("wrote 6 examples as csv")
    provenance = json.loads((tmp_path / "out" / "sieve_export.json").read_text())
    assert provenance["format"] == "csv"
    assert list_exports(store, dataset_id)["id"].tolist() == [result["export_id"]]


def test_a_cancel_asked_during_an_ingest_leaves_no_dataset(store, settings, tmp_path,
                                                           monkeypatch, no_detached_worker):
    """The runner's progress callback is where a cancel is seen: ask for it at the first
    report (from inside the worker's own run) and the ingest stops with nothing written."""
    folder = write_image_folder(tmp_path / "pets", classes=2, per_class=300)
    job_id = enqueue_ingest(store, settings, folder, name="pets")
    ingest_runner = KINDS["ingest"]

    def cancel_then_ingest(context):
        job_store.request_cancel(store, context.job_id)
        context.reporter.beat()                        # the heartbeat reads the request back
        return ingest_runner(context)

    monkeypatch.setitem(KINDS, "ingest", cancel_then_ingest)
    assert work(settings, once=True) == 1
    job = get_job(store, job_id, settings)
    assert (job["status"], job["message"]) == ("cancelled", "cancelled on request")
    assert list_datasets(store).empty
