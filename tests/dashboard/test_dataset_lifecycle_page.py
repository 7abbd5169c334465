"""The Datasets page deletes a dataset only when its name is typed, keeps the image files, and
adds a new version that carries the decisions of unchanged files (issue 11)."""

from __future__ import annotations

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.store.datasets import get_dataset, list_datasets
from audit.store.flags import Decision, current_decisions, record_decisions
from dashboard.widgets import plain
from tests.dashboard.conftest import APP, run_until_job_ends

TIMEOUT = 60


@pytest.fixture
def two_datasets(data_home, settings, store, tmp_path, monkeypatch):
    """"pets" and "birds", each a folder of real PNGs, set in the environment as `serve` does."""
    for name, labels in [("pets", ("cat", "dog")), ("birds", ("owl", "tit"))]:
        for label in labels:
            (tmp_path / name / label).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (16, 16), (i * 90, len(name) * 20, 40)).save(
                    tmp_path / name / label / f"{i}.png")
        ingest(store, tmp_path / name, settings, name=name)
    monkeypatch.setenv("AUDIT_DATA_HOME", str(data_home))
    monkeypatch.setenv("AUDIT_CONFIG", str(data_home / "absent.toml"))
    return tmp_path


def _datasets_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _delete(at: AppTest, dataset_id: int, typed: str) -> AppTest:
    at.selectbox(key="delete_dataset_id").select(dataset_id).run()
    at.text_input(key="delete_confirm").input(typed)
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_delete_needs_the_typed_name_and_leaves_the_images(two_datasets, store):
    images = sorted(p.relative_to(two_datasets) for p in two_datasets.rglob("*.png"))
    at = _datasets_page()
    pets = get_dataset(store, "pets")
    assert any("Delete dataset 'pets' (id 1, 4 samples)" in t.value for t in at.text)

    at = _delete(at, pets.id, "birds")
    assert [e.value for e in at.error] == ["Nothing deleted: type the dataset's name exactly "
                                           "to confirm."]
    assert list_datasets(store)["name"].tolist() == ["pets", "birds"]

    at = _delete(at, pets.id, "pets")
    assert any(plain("deleted dataset 'pets' (id 1): 4 samples") in s.value for s in at.success)
    assert list_datasets(store)["name"].tolist() == ["birds"]
    assert at.selectbox(key="delete_dataset_id").options == ["birds"]
    assert sorted(p.relative_to(two_datasets) for p in two_datasets.rglob("*.png")) == images


def test_a_new_version_from_the_page_carries_decisions(two_datasets, store):
    record_decisions(store, 1, [Decision("cat/0.png", "remove"), Decision("dog/1.png", "keep")])
    Image.new("RGB", (16, 16), (1, 2, 3)).save(two_datasets / "pets" / "dog" / "1.png")
    at = _datasets_page()
    at.text_input[0].input(str(two_datasets / "pets"))
    at.text_input[1].input("pets")
    at.checkbox(key="add_new_version").check()
    next(b for b in at.button if b.label == "Add").click().run()
    run_until_job_ends(at, "ingest_job")
    assert not at.exception, [e.value for e in at.exception]
    assert any(plain("'pets' is now version 2 (id 3)") in s.value and plain(   # shown escaped
        "unchanged files: 1; dropped (file changed or gone): 1") in s.value
        for s in at.success), at.success
    assert current_decisions(store, 3)["sample_id"].tolist() == ["cat/0.png"]
    assert list_datasets(store)["name"].tolist() == ["pets@v1", "birds", "pets"]


def test_adding_a_folder_twice_shows_the_warning(two_datasets):
    at = _datasets_page()
    at.text_input[0].input(str(two_datasets / "birds"))
    at.text_input[1].input("birds again")
    next(b for b in at.button if b.label == "Add").click().run()
    run_until_job_ends(at, "ingest_job")
    assert not at.exception, [e.value for e in at.exception]
    assert any(plain("already ingested as dataset 'birds' (id 2)") in w.value for w in at.warning)
