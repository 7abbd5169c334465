"""Ingestion: an image folder or a manifest (CSV, Parquet, JSONL) becomes a dataset in the store.

Layouts:
- folder: ``ROOT/<class>/<image>``, optionally under split folders ``ROOT/<split>/<class>/<image>``;
- manifest: columns ``path`` (relative to the manifest) and ``label``, optional ``caption``,
  ``split`` and ``id``; other columns are kept as the sample's ``extra``;
- a Hugging Face dataset saved on disk (``audit.hf_datasets``): its images are written under the
  data home and its rows become a listing checked like a manifest's.

Every source ends in ``ingest_listing``; a DataFrame from a notebook (``audit.notebook``) too.

Whole-dataset problems (missing columns, blank labels, duplicate ids, a path or a link that
leads outside the root, ...) refuse the dataset with a message naming the row or file and the
fix. Files are hashed in chunks, never read whole; a file that cannot be decoded, a special file
(FIFO, device, socket) or one over ``max_file_bytes`` is ingested with its ``load_error``
recorded. The files are read in batches through the executor (``executor = "ray"``: a Ray Data
pipeline), each batch in threads. The dataset and all its samples are written in one transaction.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from audit.errors import InputError
from audit.executors import LocalExecutor
from audit.hf_datasets import HFColumns, hf_listing, is_hf_dataset
from audit.images import IMAGE_SUFFIXES, inspect_image, open_regular_file, \
    sample_file, too_large
from audit.settings import Settings
from audit.store import Store
from audit.store.datasets import create_dataset, create_version

SPLITS = ("train", "val", "test")
MANIFEST_SUFFIXES = {".csv", ".parquet", ".jsonl"}
INSPECT_BATCH = 256     # images per batch: a progress report, and on Ray a Ray Data task
REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("caption", "split", "id")
Progress = Callable[[float, str], None]


def ingest(store: Store, source: Path, settings: Settings, name: str | None = None,
           progress: Progress | None = None, columns: HFColumns | None = None,
           new_version: bool = False, executor=None) -> int:
    """Read a folder, manifest or Hugging Face dataset (its columns named by ``columns``),
    inspect every image (on ``executor``, see ``_inspect_all``), store the dataset; return its
    id."""
    source = Path(source).expanduser().resolve()
    progress = progress or _quiet
    listing, root, kind, known_errors = read_source(source, settings, columns, progress)
    return ingest_listing(store, listing, root, settings, name=name or _default_name(source),
                          source=str(source), kind=kind, progress=progress,
                          known_errors=known_errors, new_version=new_version, executor=executor)


def ingest_listing(store: Store, listing: pd.DataFrame, root: Path, settings: Settings, *,
                   name: str, source: str, kind: str, progress: Progress | None = None,
                   known_errors: list[str | None] | None = None,
                   new_version: bool = False, executor=None) -> int:
    """Inspect every image of a checked listing (``check_listing``) and store the dataset.
    ``known_errors[i]``, where given, is why row i has no usable image, known before reading
    (it replaces what inspecting the file would say)."""
    samples = _inspect_all(listing, root, settings, progress or _quiet, executor)
    if known_errors is not None:
        samples["load_error"] = [known or found
                                 for known, found in zip(known_errors, samples["load_error"])]
    # new_version: the next version of the dataset `name` (audit.store.datasets.create_version)
    create = create_version if new_version else create_dataset
    return create(store, name, source, kind, str(root), samples)


def read_source(source: Path, settings: Settings, columns: HFColumns | None = None,
                progress: Progress | None = None) -> tuple[pd.DataFrame, Path, str, list | None]:
    """The checked listing of a folder, manifest or Hugging Face dataset (``source`` resolved):
    (listing, root, kind, known_errors as ``ingest_listing`` takes them)."""
    if not source.exists():
        raise InputError(f"{source} does not exist; give an image folder or a manifest file")
    if is_hf_dataset(source):
        rows, root, known_errors = hf_listing(source, settings, columns or HFColumns(),
                                              progress or _quiet)
        listing = check_listing(rows, source, root, follow_links=False)
        return listing, root, "huggingface", known_errors
    return (*_listing(source, settings), None)


def _quiet(fraction: float, message: str) -> None:
    return None


def _default_name(source: Path) -> str:
    return source.stem if source.is_file() else source.name


def _listing(source: Path, settings: Settings) -> tuple[pd.DataFrame, Path, str]:
    if source.is_dir():
        return list_image_folder(source, settings.follow_outside_links), source, "folder"
    if source.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(source, settings), source.parent, "manifest"
    raise InputError(
        f"{source}: not a folder and not a manifest ({', '.join(sorted(MANIFEST_SUFFIXES))})"
    )


# --- folders -------------------------------------------------------------------------------

def list_image_folder(root: Path, follow_links: bool) -> pd.DataFrame:
    """One row per image file: path (relative, POSIX), label, split, id. A class folder or
    file that is a link leading outside ``root`` (already resolved) refuses the folder unless
    ``follow_links``, as a manifest row pointing outside its folder does."""
    top = _visible_dirs(root)
    split_dirs = [d for d in top if d.name in SPLITS]
    if split_dirs and len(split_dirs) != len(top):
        others = sorted(d.name for d in top if d.name not in SPLITS)
        raise InputError(
            f"{root}: mixes split folders {sorted(d.name for d in split_dirs)} with other folders"
            f" {others}; put every class folder under train/, val/ or test/"
        )
    groups = [(d.name, d) for d in split_dirs] if split_dirs else [("train", root)]
    rows = [row for split, folder in groups
            for row in _class_folder_rows(root, folder, split, follow_links)]
    if not rows:
        raise InputError(
            f"{root}: no images found; expected ROOT/<class>/<image> or ROOT/<split>/<class>/<image>"
        )
    frame = pd.DataFrame(rows)
    frame["caption"] = None
    return frame


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_folder_rows(root: Path, folder: Path, split: str, follow_links: bool) -> list[dict]:
    rows = []
    for class_dir in _visible_dirs(folder):
        _check_contained(root, class_dir, follow_links)
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                if file.is_symlink():
                    _check_contained(root, file, follow_links)
                relative = file.relative_to(root).as_posix()
                rows.append({"path": relative, "label": class_dir.name, "split": split,
                             "id": relative})
    return rows


def _check_contained(root: Path, path: Path, follow_links: bool) -> None:
    """Refuse a folder entry that leads outside ``root``. ``rglob`` does not descend into
    linked folders, so below a checked class folder only a file that is itself a link can."""
    try:
        sample_file(root, path.relative_to(root), follow_links)
    except InputError as exc:
        raise InputError(f"{root}: {exc}") from None


# --- manifests -----------------------------------------------------------------------------

def read_manifest(path: Path, settings: Settings) -> pd.DataFrame:
    """Read and validate a manifest; every problem names the row (1-based, header excluded)."""
    frame = _read_table(path, settings.max_file_bytes)
    return check_listing(frame, path, path.parent.resolve(), settings.follow_outside_links)


def check_listing(frame: pd.DataFrame, where: Path | str, root: Path,
                  follow_links: bool) -> pd.DataFrame:
    """Validate a manifest-shaped frame whose paths are relative to ``root`` (resolved);
    ``where`` names it in messages."""
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{where}: missing column(s) {missing}; found {list(frame.columns)}. "
            "A manifest needs 'path' (relative to the manifest) and 'label'"
        )
    if frame.empty:
        raise InputError(f"{where}: has a header but no rows; add one row per image")
    _check_blank(where, frame, "path")
    _check_blank(where, frame, "label")
    frame["split"] = _splits(where, frame)
    frame["id"] = _ids(where, frame)
    _check_inside_root(where, root, frame, follow_links)
    return frame


def _read_table(path: Path, max_bytes: int) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        data = _read_manifest_bytes(path, max_bytes)
        if suffix == ".parquet":
            table = pd.read_parquet(io.BytesIO(data))
            return table.astype(object).where(lambda f: f.notna(), None)
        text = _decode_utf8(path, data)
        if suffix == ".jsonl":
            return _read_jsonl(path, text)
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: cannot be read as {suffix[1:]} ({exc}); check the file") from exc


def _read_manifest_bytes(path: Path, max_bytes: int) -> bytes:
    with open_regular_file(path) as handle:
        refused = too_large(os.fstat(handle.fileno()).st_size, max_bytes)
        if refused:
            raise InputError(f"{path}: manifest {refused}")
        return handle.read()


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); re-save the file as UTF-8"
        ) from exc


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix it") from exc
        except RecursionError:
            raise InputError(f"{path}: line {number} nests arrays or objects too deeply to read; "
                             "flatten that record") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object; write one object a line")
        records.append(record)
    return pd.DataFrame(records)


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _check_blank(path: Path | str, frame: pd.DataFrame, column: str) -> None:
    rows = (frame.index[_blank(frame[column])] + 1).tolist()
    if rows:
        raise InputError(
            f"{path}: column '{column}' is blank in row(s) {rows[:10]}"
            f"{' and more' if len(rows) > 10 else ''}; fill them in or remove those rows"
        )
    frame[column] = frame[column].astype(str).str.strip()


def _splits(path: Path | str, frame: pd.DataFrame) -> pd.Series:
    if "split" not in frame.columns:
        return pd.Series("train", index=frame.index)
    splits = frame["split"].where(~_blank(frame["split"]), "train").astype(str).str.strip().str.lower()
    unknown = ~splits.isin(SPLITS)
    if unknown.any():
        row = int(frame.index[unknown][0]) + 1
        raise InputError(
            f"{path}: row {row} has unknown split {frame['split'][unknown].iloc[0]!r}; "
            f"use one of {list(SPLITS)}"
        )
    return splits


def _ids(path: Path | str, frame: pd.DataFrame) -> pd.Series:
    if "id" not in frame.columns or _blank(frame["id"]).all():
        ids = frame["path"].astype(str)
        source = "path"
    else:
        _check_blank(path, frame, "id")
        ids = frame["id"].astype(str)
        source = "id"
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        rows = (frame.index[duplicated] + 1).tolist()
        raise InputError(
            f"{path}: duplicate {source} {ids[duplicated].iloc[0]!r} in rows {rows[:10]}; "
            "every sample needs a unique id"
        )
    return ids


def _check_inside_root(where: Path | str, root: Path, frame: pd.DataFrame,
                       follow_links: bool) -> None:
    for index, relative in frame["path"].items():
        try:
            sample_file(root, relative, follow_links)
        except InputError as exc:
            raise InputError(f"{where}: row {index + 1}: {exc}") from None


# --- inspection ----------------------------------------------------------------------------

def _inspect_all(listing: pd.DataFrame, root: Path, settings: Settings, progress: Progress,
                 executor=None) -> pd.DataFrame:
    """Every image's facts (size, sha256, decodability), batch by batch on ``executor``
    (``audit.executors``; this process when None), each batch in ``ingest_workers`` threads."""
    executor = executor or LocalExecutor()
    facts = executor.map_rows(
        inspect_batch, {"path": np.array([str(root / p) for p in listing["path"]], dtype=object)},
        INSPECT_BATCH, {"max_pixels": settings.max_image_pixels,
                        "max_bytes": settings.max_file_bytes,
                        "threads": settings.ingest_workers}, progress, "read images")
    return _samples_table(listing, facts)


def inspect_batch(batch: dict[str, np.ndarray], *, max_pixels: int, max_bytes: int,
                  threads: int) -> dict[str, np.ndarray]:
    """The facts of one batch of files (``batch["path"]``) as columns: ``width``, ``height``
    and ``file_size`` (-1 when unknown), ``sha256`` and ``load_error`` ("" when none)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        facts = list(pool.map(partial(inspect_image, max_pixels=max_pixels,
                                      max_bytes=max_bytes), map(Path, batch["path"])))

    def column(name: str, unknown):
        values = [getattr(fact, name) for fact in facts]
        dtype = np.int64 if unknown == -1 else object
        return np.array([unknown if value is None else value for value in values], dtype=dtype)

    return {"width": column("width", -1), "height": column("height", -1),
            "file_size": column("file_size", -1), "sha256": column("sha256", ""),
            "load_error": column("load_error", "")}


def _samples_table(listing: pd.DataFrame, facts: dict[str, np.ndarray]) -> pd.DataFrame:
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    extra_columns = [c for c in listing.columns if c not in known]
    return pd.DataFrame({
        "sample_id": listing["id"].astype(str).to_numpy(),
        "row_index": range(len(listing)),
        "split": listing["split"].to_numpy(),
        "path": listing["path"].to_numpy(),
        "label": listing["label"].astype(str).to_numpy(),
        "caption": _captions(listing),
        **{name: _known(facts[name], -1) for name in ("width", "height", "file_size")},
        **{name: _known(facts[name], "") for name in ("sha256", "load_error")},
        "extra": [_extra_json(listing, i, extra_columns) for i in range(len(listing))],
    })


def _known(values: np.ndarray, unknown):
    """A column of ``inspect_batch`` with its ``unknown`` marks as missing values."""
    missing = np.asarray(values == unknown)
    if isinstance(unknown, int):
        column = pd.array(values, dtype="Int64")
        column[missing] = pd.NA
        return column
    return [None if gone else str(value) for value, gone in zip(values, missing)]


def _captions(listing: pd.DataFrame) -> list:
    if "caption" not in listing.columns:
        return [None] * len(listing)
    return [None if _is_blank_value(c) else str(c) for c in listing["caption"]]


def _is_blank_value(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == ""


def _extra_json(listing: pd.DataFrame, row: int, columns: list[str]) -> str | None:
    if not columns:
        return None
    values = {c: listing[c].iloc[row] for c in columns}
    return json.dumps({k: (None if _is_blank_value(v) else v) for k, v in values.items()}, default=str)
