"""Export safety: output folder checks, no file outside the output, untrusted names, the source
left untouched, and a failed export leaving nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from audit.errors import InputError
from audit.export import ExportRules, export_dataset
from audit.export.paths import NameAllocator, safe_component, safe_parts, unique_folder_names
from audit.export.staging import publish, remove_stale_partials, staging_dir
from audit.store.datasets import SAMPLE_COLUMNS, create_dataset
from audit.store.exports import list_exports
from tests.audit.test_export_support import files_under, ingest_small, tree_digest, write_png

pytestmark = pytest.mark.reliability


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def test_output_must_be_new_or_empty(store, settings, small, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = export_dataset(store, settings, small, tmp_path / "empty", "csv", ExportRules())
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "images", "sieve_export.json", "test.csv", "train.csv"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="busy is not empty; choose a new or empty folder, or "
                                         "allow replacing a previous export"):
        export_dataset(store, settings, small, busy, "csv", ExportRules())
    with pytest.raises(InputError, match="refusing to overwrite .*busy: it has no sieve_export"):
        export_dataset(store, settings, small, busy, "csv", ExportRules(), overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export_dataset(store, settings, small, tmp_path / "file", "csv", ExportRules())


def test_overwrite_replaces_a_previous_export_only(store, settings, small, tmp_path) -> None:
    out = tmp_path / "out"
    export_dataset(store, settings, small, out, "csv", ExportRules())
    result = export_dataset(store, settings, small, out, "jsonl", ExportRules(splits=["test"]),
                            overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["images", "sieve_export.json", "test.jsonl"]
    assert result.rows_written == 4 and len(files_under(out / "images")) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert list_exports(store, small)["format"].tolist() == ["jsonl", "csv"]


def test_output_may_not_overlap_the_dataset(store, settings, small, tmp_path) -> None:
    for out in (tmp_path / "src", tmp_path / "src" / "clean", tmp_path):
        with pytest.raises(InputError, match="overlaps the dataset folder"):
            export_dataset(store, settings, small, out, "csv", ExportRules())
    assert not (tmp_path / "src" / "clean").exists()


def _hostile_dataset(store, root: Path, outside: Path) -> int:
    """A dataset whose stored paths try to escape (as if the store were tampered with)."""
    write_png(root / "ok.png", seed=1)
    write_png(root / "a" / "same.png", seed=2)
    write_png(root / "b" / "same.png", seed=3)
    write_png(outside, seed=99)
    (root / "link_out.png").symlink_to(outside)
    (root / "link_in.png").symlink_to(root / "ok.png")
    rows = [("ok", "ok.png", "cat"), ("dots", "../secret.png", "cat"),
            ("abs", str(outside), "cat"), ("deep", "a/../../secret.png", "cat"),
            ("link_out", "link_out.png", "cat"), ("link_in", "link_in.png", "../../evil"),
            ("same_a", "a/same.png", "a/b"), ("same_b", "b/same.png", "a/b"),
            ("slash", "ok.png", "a_b"), ("upper", "ok.png", "Cat")]
    frame = pd.DataFrame([{
        "sample_id": sid, "row_index": i, "split": "train", "path": path, "label": label,
        "caption": None, "width": 8, "height": 8, "file_size": 1, "sha256": None,
        "load_error": None, "extra": None} for i, (sid, path, label) in enumerate(rows)])
    return create_dataset(store, "hostile", str(root), "manifest", str(root), frame[SAMPLE_COLUMNS])


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_paths_from_the_dataset_cannot_leave_the_output(store, settings, tmp_path, fmt) -> None:
    outside = tmp_path / "secret.png"
    dataset_id = _hostile_dataset(store, tmp_path / "ds", outside)
    secret = outside.read_bytes()
    before = {p for p in files_under(tmp_path) if not p.startswith("data/")}
    source = tree_digest(tmp_path / "ds")
    out = tmp_path / "exports" / "out"
    export_dataset(store, settings, dataset_id, out, fmt, ExportRules())
    after = {p for p in files_under(tmp_path) if not p.startswith(("data/", "exports/out/"))}
    assert after == before
    assert tree_digest(tmp_path / "ds") == source
    exported = [p for p in out.rglob("*") if p.is_file()]
    assert all(not p.is_symlink() and p.resolve().is_relative_to(out) for p in exported)
    assert all(p.read_bytes() != secret for p in exported)
    provenance = json.loads((out / "sieve_export.json").read_text())
    skipped = {s["sample_id"]: s["reason"] for s in provenance["skipped_files"]}
    assert set(skipped) == {"dots", "abs", "deep", "link_out"}
    assert "leads outside the dataset folder" in skipped["dots"]
    assert "leads outside the dataset folder" in skipped["abs"]
    assert "is a link to" in skipped["link_out"]
    assert "outside the dataset folder" in skipped["link_out"]


def test_untrusted_labels_become_distinct_safe_folders(store, settings, tmp_path) -> None:
    dataset_id = _hostile_dataset(store, tmp_path / "ds", tmp_path / "secret.png")
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, "imagefolder", ExportRules())
    assert files_under(out) == sorted([
        "sieve_export.json", "train/Cat/ok.png", "train/cat-2/ok.png", "train/_.._evil/link_in.png",
        "train/a_b/same.png", "train/a_b/same-2.png", "train/a_b-2/ok.png"])
    provenance = json.loads((out / "sieve_export.json").read_text())
    assert provenance["files"]["label_folders"] == {
        "../../evil": "_.._evil", "Cat": "Cat", "a/b": "a_b", "a_b": "a_b-2", "cat": "cat-2"}


def test_manifest_rows_keep_skipped_files_with_a_note(store, settings, tmp_path) -> None:
    dataset_id = _hostile_dataset(store, tmp_path / "ds", tmp_path / "secret.png")
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, "csv", ExportRules())
    manifest = pd.read_csv(out / "train.csv", keep_default_na=False).set_index("id")
    assert manifest.loc["dots", "path"] == "images/secret.png"
    assert manifest.loc["dots", "export_note"].startswith("file not exported: path '../secret.png'")
    absolute = manifest.loc["abs", "path"]
    assert absolute.startswith("images/") and not (out / absolute).exists()
    assert manifest.loc["ok", "export_note"] == ""
    assert sorted(manifest["path"]) == sorted(set(manifest["path"]))


def test_a_failed_export_leaves_nothing(store, settings, small, tmp_path) -> None:
    calls = []

    def explode(fraction: float, message: str) -> None:
        calls.append(fraction)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        export_dataset(store, settings, small, tmp_path / "out", "parquet", ExportRules(),
                       progress=explode)
    assert calls == [pytest.approx(1 / 12)]
    assert sorted(os.listdir(tmp_path)) == ["data", "src"]
    assert list_exports(store, small).empty


def test_safe_names() -> None:
    assert [safe_component(t) for t in ("..", ".", ".hidden", "a/b", "con.png", "ok name.PNG",
                                        "名前.png", "tab\there")] == [
        "_", "_", "hidden", "a_b", "_con.png", "ok name.PNG", "名前.png", "tab_here"]
    long = safe_component("長" * 300 + ".png")
    assert long.endswith(".png") and len(long.encode()) <= 120
    assert safe_parts("/etc/../passwd") == ["etc", "passwd"]
    assert safe_parts("..\\..\\win.ini") == ["win.ini"]
    names = NameAllocator()
    assert [names.claim(p) for p in (["a", "x.png"], ["a", "X.png"], ["a"], ["a", "x.png"])] == [
        "a/x.png", "a/X-2.png", "a-2", "a/x-3.png"]
    assert unique_folder_names(["a/b", "a_b", "A_B"]) == {
        "A_B": "A_B", "a/b": "a_b-2", "a_b": "a_b-3"}


def test_an_export_that_appeared_meanwhile_is_not_replaced(tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="out is not empty"):
        with staging_dir(out) as stage:
            (stage / "train.csv").write_text("new")
            out.mkdir()
            (out / "sieve_export.json").write_text("{}")
            publish(stage, out, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert os.listdir(out) == ["sieve_export.json"]


def test_stale_partials_of_dead_processes_are_removed(tmp_path) -> None:
    out = tmp_path / "out"
    dead = tmp_path / ".out.sieve-partial-999999999-abc"
    alive = tmp_path / f".out.sieve-partial-{os.getpid()}-abc"
    other = tmp_path / ".other.sieve-partial-999999999-abc"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert remove_stale_partials(out) == [dead]
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, other.name])
