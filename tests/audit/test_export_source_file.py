"""``audit.export.paths.source_file``: the export finds a sample's file through the one
containment check (``audit.images.sample_file``) and reads only regular, readable files; every
refusal is an ``UnusableSource`` whose message names the path."""

from __future__ import annotations

import json
import os

import pytest

from audit.export import ExportRules, export_dataset
from audit.export.paths import UnusableSource, source_file
from audit.settings import load_settings
from audit.store import Store
from audit.store.datasets import samples_frame
from tests.audit.test_export_support import ingest_small, write_png


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "ds"
    write_png(folder / "a" / "ok.png", seed=1)
    write_png(tmp_path / "secret.png", seed=2)
    (folder / "out.png").symlink_to(tmp_path / "secret.png")
    (folder / "in.png").symlink_to(folder / "a" / "ok.png")
    os.mkfifo(folder / "pipe.png")
    return folder.resolve()


def test_a_file_inside_the_folder_is_read_through_links_that_stay_inside(root) -> None:
    assert source_file(root, "a/ok.png") == str(root / "a" / "ok.png")
    assert source_file(root, "in.png") == str(root / "a" / "ok.png")
    assert source_file(root, "a/../a/ok.png") == str(root / "a" / "ok.png")


@pytest.mark.parametrize("path, message", [
    ("../secret.png", "'../secret.png' leads outside the dataset folder"),
    ("a/../../secret.png", "leads outside the dataset folder"),
    ("/etc/passwd", "'/etc/passwd' leads outside the dataset folder"),
    ("out.png", "'out.png' is a link to .*secret.png, outside the dataset folder"),
    ("a/bad\0.png", "contains a NUL byte"),
    ("missing.png", "cannot read 'missing.png'"),
    ("pipe.png", "'pipe.png' is not a regular file"),
    ("a", "'a' is not a regular file"),
])
def test_refused_sources_name_the_path_and_why(root, path, message) -> None:
    with pytest.raises(UnusableSource, match=message):
        source_file(root, path)


def test_a_link_outside_is_read_only_when_links_may_lead_outside(root) -> None:
    assert source_file(root, "out.png", follow_links=True) == str(root.parent / "secret.png")
    with pytest.raises(UnusableSource, match="leads outside the dataset folder"):
        source_file(root, "../secret.png", follow_links=True)


def test_the_export_follows_outside_links_as_ingestion_did(data_home, tmp_path) -> None:
    """A dataset ingested with follow_outside_links exports the file its link names."""
    settings = load_settings(toml_path=data_home / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(data_home),
                                  "AUDIT_FOLLOW_OUTSIDE_LINKS": "1"})
    store = Store.from_settings(settings)
    folder = tmp_path / "src"
    write_png(tmp_path / "elsewhere.png", seed=5)
    dataset_id = ingest_small(store, settings, folder, n=4)
    samples = samples_frame(store, dataset_id)
    first = samples.iloc[0]
    (folder / first["path"]).unlink()
    (folder / first["path"]).symlink_to(tmp_path / "elsewhere.png")
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, "imagefolder", ExportRules())
    provenance = json.loads((out / "sieve_export.json").read_text())
    assert provenance["skipped_files"] == []
    exported = list(out.rglob("*.png"))
    assert len(exported) == 4
    assert any(p.read_bytes() == (tmp_path / "elsewhere.png").read_bytes() for p in exported)
