"""Ingestion of folders and manifests, and every kind of bad input the issue lists."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from audit.ingest import ingest
from audit.errors import InputError
from audit.store.datasets import list_datasets, samples_frame


def _png(path: Path, size=(8, 6), colour="red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _manifest(folder: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    for row in rows:
        if str(row.get("path", "")).endswith(".png") and not str(row["path"]).startswith(("..", "/")):
            _png(folder / row["path"])
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _assert_refused(store, settings, source: Path, *fragments: str) -> None:
    with pytest.raises(InputError) as caught:
        ingest(store, source, settings)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert list_datasets(store).empty  # nothing half-written


def test_folder_with_split_folders(tmp_path, store, settings) -> None:
    for split, label, name in [("train", "cat", "a.png"), ("train", "dog", "b.png"),
                               ("test", "cat", "c.png"), ("val", "dog", "d.jpg")]:
        _png(tmp_path / "ds" / split / label / name)
    (tmp_path / "ds" / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    dataset_id = ingest(store, tmp_path / "ds", settings)
    frame = samples_frame(store, dataset_id).set_index("sample_id")
    assert sorted(frame.index) == ["test/cat/c.png", "train/cat/a.png", "train/dog/b.png",
                                   "val/dog/d.jpg"]
    assert frame.loc["val/dog/d.jpg", ["split", "label", "width", "height"]].tolist() == \
        ["val", "dog", 8, 6]
    assert frame["load_error"].isna().all()
    assert frame["sha256"].str.len().eq(64).all()


def test_folder_without_splits_is_all_train(tmp_path, store, settings) -> None:
    _png(tmp_path / "ds" / "cat" / "a.png")
    _png(tmp_path / "ds" / "dog" / "b.png")
    frame = samples_frame(store, ingest(store, tmp_path / "ds", settings))
    assert frame["split"].tolist() == ["train", "train"]
    assert frame["label"].tolist() == ["cat", "dog"]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_manifest_round_trip(tmp_path, store, settings, fmt) -> None:
    rows = [{"id": f"s{i}", "path": f"img/{i}.png", "label": "zero" if i % 2 else "one",
             "caption": f"caption {i}", "split": "test" if i == 0 else "train", "source": "web"}
            for i in range(5)]
    for row in rows:
        _png(tmp_path / row["path"])
    table = pd.DataFrame(rows)
    path = tmp_path / f"manifest.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    elif fmt == "parquet":
        table.to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    frame = samples_frame(store, ingest(store, path, settings, name=f"m-{fmt}"))
    assert frame["sample_id"].tolist() == [f"s{i}" for i in range(5)]
    assert frame["split"].tolist() == ["test"] + ["train"] * 4
    assert frame["caption"].tolist() == [f"caption {i}" for i in range(5)]
    assert json.loads(frame["extra"][0]) == {"source": "web"}
    assert frame["load_error"].isna().all()


def test_bad_files_are_recorded_not_refused(tmp_path, store, settings) -> None:
    good = _png(tmp_path / "img" / "good.png", size=(40, 40))
    (tmp_path / "img" / "truncated.png").write_bytes(good.read_bytes()[:50])
    (tmp_path / "img" / "text.png").write_text("plain text")
    rows = [{"path": f"img/{n}.png", "label": "a"} for n in ("good", "truncated", "text", "gone")]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    frame = samples_frame(store, ingest(store, tmp_path / "m.csv", settings)).set_index("sample_id")
    errors = frame["load_error"]
    assert pd.isna(errors["img/good.png"])
    assert "cannot decode" in errors["img/truncated.png"]
    assert errors["img/text.png"] == "not an image (unrecognised format)"
    assert errors["img/gone.png"].startswith("cannot read file")


def test_missing_columns(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"file": "a.png", "label": "x"}])
    _assert_refused(store, settings, path, "missing column(s) ['path']", "'label'")


def test_unknown_split(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"path": "a.png", "label": "x", "split": "train"},
                                {"path": "b.png", "label": "x", "split": "holdout"}])
    _assert_refused(store, settings, path, "row 2", "'holdout'", "['train', 'val', 'test']")


def test_empty_manifest_and_empty_folder(tmp_path, store, settings) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("path,label\n")
    _assert_refused(store, settings, path, "no rows")
    (tmp_path / "folder" / "cat").mkdir(parents=True)
    _assert_refused(store, settings, tmp_path / "folder", "no images found")


def test_duplicate_ids(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"id": "a", "path": "1.png", "label": "x"},
                                {"id": "b", "path": "2.png", "label": "x"},
                                {"id": "a", "path": "3.png", "label": "x"}])
    _assert_refused(store, settings, path, "duplicate id 'a'", "rows [1, 3]")


def test_blank_labels(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"path": "1.png", "label": "x"}, {"path": "2.png", "label": " "},
                                {"path": "3.png", "label": ""}])
    _assert_refused(store, settings, path, "'label' is blank in row(s) [2, 3]")


@pytest.mark.reliability
@pytest.mark.parametrize("bad", ["../outside.png", "sub/../../outside.png", "/etc/passwd"])
def test_paths_that_escape_the_root(tmp_path, store, settings, bad) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    path = _manifest(root, [{"path": "ok.png", "label": "x"}, {"path": bad, "label": "x"}])
    _assert_refused(store, settings, path, "row 2", "outside the dataset folder")


@pytest.mark.reliability
def test_symlink_out_of_the_root_is_refused(tmp_path, store, settings) -> None:
    outside = _png(tmp_path / "secret.png")
    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(outside, root / "link.png")
    path = _manifest(root, [{"path": "link.png", "label": "x"}])
    _assert_refused(store, settings, path, "outside the dataset folder")


def test_non_utf8_csv(tmp_path, store, settings) -> None:
    _png(tmp_path / "a.png")
    path = tmp_path / "latin1.csv"
    path.write_bytes("path,label\na.png,caf\u00e9\n".encode("latin-1"))
    _assert_refused(store, settings, path, "line 2 is not UTF-8", "0xe9", "re-save the file as UTF-8")


def test_folder_mixing_splits_and_classes(tmp_path, store, settings) -> None:
    _png(tmp_path / "ds" / "train" / "cat" / "a.png")
    _png(tmp_path / "ds" / "dog" / "b.png")
    _assert_refused(store, settings, tmp_path / "ds", "mixes split folders", "['dog']")


def test_same_name_twice_is_refused(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"path": "a.png", "label": "x"}])
    ingest(store, path, settings, name="one")
    with pytest.raises(InputError, match="already exists"):
        ingest(store, path, settings, name="one")
    assert len(list_datasets(store)) == 1


def test_awkward_images_ingest_with_their_upright_size(tmp_path, store, settings) -> None:
    folder = tmp_path / "ds" / "x"
    folder.mkdir(parents=True)
    Image.new("CMYK", (5, 3)).save(folder / "cmyk.jpg")
    Image.new("I;16", (5, 3)).save(folder / "deep.png")
    Image.new("RGBA", (5, 3)).save(folder / "alpha.png")
    Image.new("RGB", (5, 3)).convert("P").save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (5, 3)).save(folder / "rotated.jpg", exif=exif.tobytes())
    frame = samples_frame(store, ingest(store, tmp_path / "ds", settings)).set_index("path")
    assert frame["load_error"].isna().all()
    assert (frame.loc["x/rotated.jpg", "width"], frame.loc["x/rotated.jpg", "height"]) == (3, 5)
    assert (frame.loc["x/cmyk.jpg", "width"], frame.loc["x/cmyk.jpg", "height"]) == (5, 3)


# --- one file must not hang or exhaust ingest (issue 14) -----------------------------------

@pytest.mark.reliability
def test_a_file_over_the_size_limit_is_recorded_unread_naming_the_setting(tmp_path, store,
                                                                          settings) -> None:
    _png(tmp_path / "ds" / "x" / "small.png")
    big = tmp_path / "ds" / "x" / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    big.write_bytes(big.read_bytes() + b"\0" * 4096)  # trailing bytes: still a valid PNG
    limited = dataclasses.replace(settings, max_file_bytes=2048)
    frame = samples_frame(store, ingest(store, tmp_path / "ds", limited)).set_index("path")
    assert pd.isna(frame.loc["x/small.png", "load_error"])
    error = frame.loc["x/big.png", "load_error"]
    assert "over the limit of 2,048" in error and "AUDIT_MAX_FILE_BYTES" in error
    assert pd.isna(frame.loc["x/big.png", "sha256"])  # not even hashed


@pytest.mark.reliability
def test_a_large_file_is_hashed_in_chunks_not_read_whole(tmp_path, subprocess_env) -> None:
    """A 768 MiB sparse file (not an image) is hashed without holding it in memory: the
    ingesting process stays far below the file's size."""
    folder = tmp_path / "ds" / "x"
    folder.mkdir(parents=True)
    size = 768 * 2**20
    with open(folder / "huge.png", "wb") as handle:
        handle.truncate(size)
    # VmHWM is this process's own peak (ru_maxrss would carry the forking parent's peak)
    script = ("import re, sys; from audit.cli import main; rc = main(sys.argv[1:]); "
              "status = open('/proc/self/status').read(); "
              "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024); "
              "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", script, "ingest", str(tmp_path / "ds")],
                            capture_output=True, text=True, timeout=600,
                            env=dict(subprocess_env, AUDIT_MAX_FILE_BYTES=str(2**30)))
    assert result.returncode == 0, result.stderr
    assert "1 unreadable" in result.stdout
    peak_bytes = int(result.stdout.strip().splitlines()[-1])
    assert peak_bytes < size * 2 // 3, f"peak memory {peak_bytes:,} for a {size:,}-byte file"


@pytest.mark.reliability
def test_a_fifo_in_a_manifest_is_recorded_not_waited_on(tmp_path, subprocess_env) -> None:
    _png(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    pd.DataFrame([{"path": "good.png", "label": "a"}, {"path": "pipe.png", "label": "a"}]).to_csv(
        tmp_path / "m.csv", index=False)
    result = subprocess.run([sys.executable, "-m", "audit", "ingest", str(tmp_path / "m.csv")],
                            capture_output=True, text=True, timeout=120, env=subprocess_env)
    assert result.returncode == 0, result.stderr
    assert "2 samples" in result.stdout and "1 unreadable" in result.stdout
    assert "unreadable pipe.png: cannot read file: a FIFO, not a regular file" in result.stderr


@pytest.mark.reliability
def test_a_manifest_over_the_size_limit_is_refused(tmp_path, store, settings) -> None:
    path = _manifest(tmp_path, [{"path": f"{i}.png", "label": "x"} for i in range(20)])
    limited = dataclasses.replace(settings, max_file_bytes=100)
    _assert_refused(store, limited, path, "manifest file is", "over the limit of 100",
                    "AUDIT_MAX_FILE_BYTES")


# --- folder ingest and links out of the folder (issue 14) ----------------------------------

@pytest.mark.reliability
def test_folder_link_to_a_file_outside_is_refused(tmp_path, store, settings) -> None:
    secret = tmp_path / "secret.png"
    _png(secret)
    _png(tmp_path / "ds" / "cat" / "a.png")
    os.symlink(secret, tmp_path / "ds" / "cat" / "b.png")
    _assert_refused(store, settings, tmp_path / "ds", "'cat/b.png' is a link to",
                    "outside the dataset folder", "follow_outside_links = true")


@pytest.mark.reliability
def test_folder_link_to_a_class_folder_outside_is_refused(tmp_path, store, settings) -> None:
    _png(tmp_path / "elsewhere" / "one.png")
    _png(tmp_path / "ds" / "cat" / "a.png")
    os.symlink(tmp_path / "elsewhere", tmp_path / "ds" / "dog")
    _assert_refused(store, settings, tmp_path / "ds", "'dog' is a link to",
                    "outside the dataset folder")


def test_links_inside_the_folder_are_followed(tmp_path, store, settings) -> None:
    _png(tmp_path / "ds" / "cat" / "a.png")
    os.symlink(tmp_path / "ds" / "cat" / "a.png", tmp_path / "ds" / "cat" / "b.png")
    frame = samples_frame(store, ingest(store, tmp_path / "ds", settings))
    assert frame["path"].tolist() == ["cat/a.png", "cat/b.png"]
    assert frame["load_error"].isna().all() and frame["sha256"].nunique() == 1


@pytest.mark.reliability
def test_the_setting_allows_links_out_of_the_folder(tmp_path, store, settings) -> None:
    _png(tmp_path / "elsewhere" / "one.png", colour="blue")
    _png(tmp_path / "ds" / "cat" / "a.png")
    os.symlink(tmp_path / "elsewhere", tmp_path / "ds" / "dog")
    allowed = dataclasses.replace(settings, follow_outside_links=True)
    frame = samples_frame(store, ingest(store, tmp_path / "ds", allowed))
    assert frame["path"].tolist() == ["cat/a.png", "dog/one.png"]
    assert frame["load_error"].isna().all()


# --- bad input that used to raise a traceback (issue 14) -----------------------------------

@pytest.mark.reliability
def test_a_nul_byte_in_a_manifest_path_names_the_row(tmp_path, store, settings) -> None:
    (tmp_path / "m.csv").write_text('path,label\nok.png,x\n"a\0b.png",x\n')
    _assert_refused(store, settings, tmp_path / "m.csv", "row 2", "contains a NUL byte")


@pytest.mark.reliability
def test_deeply_nested_jsonl_names_the_line(tmp_path, store, settings) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": "x"}\n'
                                      f'{{"path": "b.png", "label": {nested}}}\n')
    _assert_refused(store, settings, tmp_path / "m.jsonl", "line 2 nests", "too deeply")
