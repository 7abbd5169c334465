"""Writers: per-split manifests (Parquet, CSV, JSONL) beside an ``images/`` folder, or an
image-folder tree ``split/label/file``.

CSV manifests follow ``csv_cells`` (every text cell quoted, formula prefixes neutralised).
Manifest rows carry the original columns (id, caption, split, the dataset's extra columns),
``path`` relative to the manifest, the cleaned ``label``, the ``original_label``, ``change``
and ``reason``, the ``original_path``, the ingestion ``load_error``, an ``export_note`` when
the file itself could not be exported, and ``sample_weight`` when weights are on. Files are
hard-linked where the file system allows it and copied otherwise. An image that did not
load at ingestion stays in the manifests (its ``load_error`` says so) but is left out of an
image-folder tree, where a training loader would trip over it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from audit.export.csv_cells import write_csv
from audit.export.paths import (
    NameAllocator, UnusableSource, inside, place_file, safe_component, safe_parts, source_file,
    unique_folder_names,
)

Progress = Callable[[float, str], None]
Sources = Callable[[str], str]   # a sample's stored path -> the file to read (source_file)
IMAGES_FOLDER = "images"
TABLE_SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
CHANGE_WORDS = {"keep": "kept", "relabel": "relabelled", "remove": "removed"}
OWN_COLUMNS = ["id", "path", "label", "original_label", "split", "caption", "change", "reason",
               "original_path", "load_error", "export_note", "sample_weight"]


@dataclasses.dataclass
class WriteReport:
    """What the writer did: file placements, files left out and why, tables written."""

    links: int = 0
    copies: int = 0
    skipped: list[dict] = dataclasses.field(default_factory=list)
    tables: list[dict] = dataclasses.field(default_factory=list)
    label_folders: dict[str, str] = dataclasses.field(default_factory=dict)


def rows_to_write(plan: pd.DataFrame, samples: pd.DataFrame, weights: bool) -> pd.DataFrame:
    """The plan rows that go into the export (all of them with weights), with sample columns."""
    written = plan if weights else plan[plan["action"] != "remove"]
    facts = samples[["sample_id", "path", "caption", "load_error", "extra"]]
    return written.merge(facts, on="sample_id", how="left", validate="one_to_one")


def write_export(rows: pd.DataFrame, root: Path, stage: Path, fmt: str,
                 progress: Progress, follow_links: bool = False) -> WriteReport:
    """Write ``rows`` into the stage folder in format ``fmt``; ``root`` is the dataset folder
    (``follow_links``: a sample's link may lead outside it, as ingestion allowed)."""
    sources = functools.partial(source_file, root, follow_links=follow_links)
    if fmt == "imagefolder":
        return _write_image_folder(rows, sources, stage, progress)
    return _write_manifests(rows, sources, stage, fmt, progress)


# --- manifests -----------------------------------------------------------------------------

def _write_manifests(rows: pd.DataFrame, sources: Sources, stage: Path, fmt: str,
                     progress: Progress) -> WriteReport:
    names = NameAllocator()
    targets = [f"{IMAGES_FOLDER}/{names.claim(safe_parts(p))}" for p in rows["path"]]
    report = WriteReport()
    notes = _place_all(rows, targets, sources, stage, report, progress)
    frame = manifest_frame(rows, targets, _with_load_notes(notes, rows["load_error"]))
    for split, part in frame.groupby("split", sort=False):
        name = safe_component(split) + TABLE_SUFFIXES[fmt]
        _write_table(part, inside(stage, name), fmt)
        report.tables.append({"split": split, "file": name, "rows": len(part)})
    return report


def _with_load_notes(notes: list[str | None], load_errors: pd.Series) -> list[str | None]:
    return [note or (None if _missing(error) else
                     "image did not load at ingestion; kept in the manifest only")
            for note, error in zip(notes, load_errors)]


def manifest_frame(rows: pd.DataFrame, targets: list[str], notes: list[str | None]) -> pd.DataFrame:
    """The manifest columns for ``rows`` (see the module docstring)."""
    frame = pd.DataFrame({
        "id": rows["sample_id"].to_numpy(), "path": targets,
        "label": rows["new_label"].to_numpy(), "original_label": rows["label"].to_numpy(),
        "split": rows["split"].to_numpy(), "caption": _nullable(rows["caption"]),
    })
    frame = pd.concat([frame, _extra_columns(rows["extra"])], axis=1)
    frame["change"] = rows["action"].map(CHANGE_WORDS).to_numpy()
    frame["reason"] = rows["reason"].to_numpy()
    frame["original_path"] = rows["path"].to_numpy()
    frame["load_error"] = _nullable(rows["load_error"])
    frame["export_note"] = notes
    if "sample_weight" in rows.columns:
        frame["sample_weight"] = rows["sample_weight"].to_numpy(dtype=float)
    return frame


def _nullable(values: pd.Series) -> list:
    return [None if _missing(v) else v for v in values]


def _extra_columns(extra: pd.Series) -> pd.DataFrame:
    records = [json.loads(text) if isinstance(text, str) else {} for text in extra]
    frame = pd.DataFrame.from_records(records, index=range(len(records)))
    frame = frame.rename(columns=lambda c: f"extra_{c}" if c in OWN_COLUMNS else c)
    return frame.apply(_one_type, axis=0) if len(frame.columns) else frame


def _one_type(column: pd.Series) -> pd.Series:
    """Nested values become JSON text; a column of mixed types becomes text, so every format
    can hold it."""
    values = [None if _missing(v) else v for v in column]
    values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values]
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1:
        values = [None if v is None else str(v) for v in values]
    return pd.Series(values, index=column.index, dtype=object)


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _write_table(frame: pd.DataFrame, path: str, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        write_csv(frame, path)
    else:
        with open(path, "x", encoding="utf-8") as out:
            for record in frame.to_dict("records"):
                out.write(json.dumps(_plain(record), ensure_ascii=False) + "\n")


def _plain(record: dict) -> dict:
    return {k: (None if _missing(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in record.items()}


# --- image folder --------------------------------------------------------------------------

def _write_image_folder(rows: pd.DataFrame, sources: Sources, stage: Path,
                        progress: Progress) -> WriteReport:
    report = WriteReport()
    broken = rows["load_error"].notna()
    lost = rows[broken]
    report.skipped += [
        {"sample_id": s, "path": p, "reason": f"image did not load at ingestion ({e}); "
         "kept out of the image folder"}
        for s, p, e in zip(lost["sample_id"], lost["path"], lost["load_error"])
    ]
    usable = rows[~broken].reset_index(drop=True)
    report.label_folders = unique_folder_names(usable["new_label"].tolist())
    names = NameAllocator()
    targets = [
        names.claim([safe_component(split), report.label_folders[label], safe_parts(path)[-1]])
        for split, label, path in zip(usable["split"], usable["new_label"], usable["path"])
    ]
    _place_all(usable, targets, sources, stage, report, progress)
    return report


# --- files ---------------------------------------------------------------------------------

def _place_all(rows: pd.DataFrame, targets: list[str], sources: Sources, stage: Path,
               report: WriteReport, progress: Progress) -> list[str | None]:
    """Link or copy every row's file to its target; return a per-row note for skipped ones."""
    notes: list[str | None] = [None] * len(targets)
    step = max(1, len(targets) // 100)
    for i, (sample_id, path, target) in enumerate(zip(rows["sample_id"], rows["path"], targets)):
        try:
            kind = place_file(sources(path), inside(stage, target))
        except UnusableSource as exc:
            report.skipped.append({"sample_id": sample_id, "path": path, "reason": str(exc)})
            notes[i] = f"file not exported: {exc}"
            continue
        report.links += kind == "link"
        report.copies += kind == "copy"
        if (i + 1) % step == 0:
            progress((i + 1) / len(targets), f"placed {i + 1}/{len(targets)} files")
    return notes
