"""Hugging Face datasets saved on disk: a ``save_to_disk`` folder (one dataset, or a
``DatasetDict`` with a folder per split) or a Parquet file whose image column holds bytes.

They are read with pyarrow a batch at a time (the ``datasets`` library is not needed). Each
image's bytes are written once under ``data_home/hf_images/``, named by their SHA-256 (that
folder is the root of every such dataset), and each row becomes a listing row (path, label,
split, id ``<split>/<index>``, caption) that ingest then checks like a manifest's. The labels
of a ``ClassLabel`` column become its class names.

A column that is missing or of the wrong kind, or a row without a label, refuses the dataset
with the columns found and the option that names another. A row without usable image bytes is
ingested with its reason (``known_errors``: the split, row and column, and the fix), and the
rest goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from audit.errors import InputError
from audit.images import open_regular_file, sample_file, too_large
from audit.settings import Settings

IMAGES_FOLDER = "hf_images"
MARKERS = ("dataset_dict.json", "state.json")   # what save_to_disk writes at the top
SPLIT_NAMES = {"train": "train", "validation": "val", "valid": "val", "val": "val",
               "dev": "val", "test": "test"}
ROWS_PER_CHUNK = 64
MAX_METADATA_BYTES = 16 << 20
FORMAT_SUFFIXES = {"JPEG": ".jpg", "TIFF": ".tif"}
ARROW_FILE_MAGIC = b"ARROW1"
Progress = Callable[[float, str], None]


@dataclasses.dataclass(frozen=True)
class HFColumns:
    """Which columns hold the image, the label and (optionally) a caption."""

    image: str = "image"
    label: str = "label"
    caption: str | None = None


@dataclasses.dataclass(frozen=True)
class Part:
    """One split of the dataset: its name there, its files (Arrow or Parquet), its features."""

    split: str
    files: list[Path]
    features: dict

    @property
    def sieve_split(self) -> str:
        return SPLIT_NAMES[self.split.lower()]


def is_hf_dataset(source: Path) -> bool:
    """A ``save_to_disk`` folder, or a Parquet file with a column of image bytes."""
    if source.is_dir():
        return any((source / marker).is_file() for marker in MARKERS)
    if source.suffix.lower() != ".parquet":
        return False
    try:
        with open_regular_file(source) as handle:
            schema = pq.read_schema(handle)
    except (pa.ArrowException, OSError):
        return False  # not Parquet at all: the manifest reader says why
    return bool(_image_columns(schema, _schema_features(schema)))


def hf_listing(source: Path, settings: Settings, columns: HFColumns,
               progress: Progress) -> tuple[pd.DataFrame, Path, list[str | None]]:
    """Write every row's image under the data home; the rows as a listing, its root and, per
    row, why it has no usable image (None when it has one)."""
    root = (Path(settings.data_home) / IMAGES_FOLDER).resolve()
    rows, errors = [], []
    for row, error, fraction in _rows(_parts(source), columns, root, settings):
        rows.append(row)
        errors.append(error)
        if len(rows) % 256 == 0:
            progress(fraction, f"wrote {len(rows)} images")
    if not rows:
        raise InputError(f"{source}: the dataset has no rows; save one with images and labels")
    progress(1.0, f"wrote {len(rows)} images")
    return pd.DataFrame(rows), root, errors


# --- finding the files of each split --------------------------------------------------------

def _parts(source: Path) -> list[Part]:
    if source.is_file():
        parts = [_parquet_part(source)]
    elif (source / "dataset_dict.json").is_file():
        parts = [_saved_part(_inside(source, name), name) for name in _dict_splits(source)]
    else:
        parts = [_saved_part(source, None)]
    for part in parts:
        if part.split.lower() not in SPLIT_NAMES:
            raise InputError(f"{source}: split {part.split!r} is not train, validation or test; "
                             "save only those splits (or rename it) and ingest again")
    return parts


def _parquet_part(path: Path) -> Part:
    with open_regular_file(path) as handle:
        features = _schema_features(pq.read_schema(handle))
    prefix = path.stem.split("-")[0].lower()
    return Part(prefix if prefix in SPLIT_NAMES else "train", [path], features)


def _dict_splits(source: Path) -> list[str]:
    splits = _read_json(source / "dataset_dict.json").get("splits")
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise InputError(f"{source / 'dataset_dict.json'}: 'splits' is not a list of names; "
                         "save the DatasetDict again with save_to_disk")
    return splits


def _saved_part(folder: Path, split: str | None) -> Part:
    """One ``Dataset.save_to_disk`` folder: state.json lists its Arrow files."""
    if not (folder / "state.json").is_file():
        raise InputError(f"{folder}: no state.json, so not a folder written by save_to_disk; "
                         "save the dataset with Dataset.save_to_disk and ingest that folder")
    state = _read_json(folder / "state.json")
    files = state.get("_data_files")
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(
            f.get("filename"), str) for f in files):
        raise InputError(f"{folder / 'state.json'}: '_data_files' does not list the Arrow "
                         "files; save the dataset again with save_to_disk")
    info = folder / "dataset_info.json"
    features = _read_json(info).get("features") if info.is_file() else None
    name = split or str(state.get("_split") or "train").split("[")[0]
    return Part(name, [_inside(folder, f["filename"]) for f in files],
                features if isinstance(features, dict) else {})


def _inside(folder: Path, name: str) -> Path:
    """A file named by the dataset's metadata, refused when it leads outside its folder."""
    try:
        return sample_file(folder.resolve(), name, follow_links=False)
    except InputError as exc:
        raise InputError(f"{folder}: {exc}") from None


def _read_json(path: Path) -> dict:
    try:
        with open_regular_file(path) as handle:
            text = handle.read(MAX_METADATA_BYTES + 1)
        if len(text) > MAX_METADATA_BYTES:
            raise InputError(f"{path}: over {MAX_METADATA_BYTES:,} bytes, too large for "
                             "dataset metadata; save the dataset again")
        value = json.loads(text)
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); save the dataset again") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}); save the dataset again") from exc
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a JSON object; save the dataset again")
    return value


def _schema_features(schema: pa.Schema) -> dict:
    """The ``datasets`` features kept in a file's schema metadata, or {}."""
    try:
        meta = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        features = meta.get("info", {}).get("features", {})
    except (ValueError, AttributeError, RecursionError):
        return {}
    return features if isinstance(features, dict) else {}


# --- columns ---------------------------------------------------------------------------------

def _image_columns(schema: pa.Schema, features: dict) -> list[str]:
    """Columns that hold image bytes: a struct with a binary ``bytes`` field, or a column the
    features declare an ``Image``."""
    return [field.name for field in schema
            if _feature_type(features, field.name) == "Image" or _is_image_struct(field.type)]


def _is_image_struct(kind: pa.DataType) -> bool:
    return pa.types.is_struct(kind) and any(
        kind.field(i).name == "bytes" and _is_binary(kind.field(i).type)
        for i in range(kind.num_fields))


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _feature_type(features: dict, name: str) -> str | None:
    feature = features.get(name)
    return feature.get("_type") if isinstance(feature, dict) else None


def _class_names(features: dict, name: str) -> list[str] | None:
    """The names of a ``ClassLabel`` column, or None when it is not one."""
    if _feature_type(features, name) != "ClassLabel":
        return None
    names = features[name].get("names")
    return [str(n) for n in names] if isinstance(names, list) else None


def _check_columns(path: Path, schema: pa.Schema, features: dict, columns: HFColumns) -> None:
    found = schema.names
    if columns.image not in found:
        images = _image_columns(schema, features)
        raise InputError(f"{path}: no image column {columns.image!r}; its columns are {found}. "
                         "Name the image column with --image-column (image_column= in Python)"
                         + (f", e.g. {images[0]!r}" if images else ""))
    kind = schema.field(columns.image).type
    if not (_is_image_struct(kind) or _is_binary(kind)):
        raise InputError(f"{path}: column {columns.image!r} holds {kind}, not image bytes; name "
                         "the column of images (bytes and path) with --image-column")
    if columns.label not in found:
        labels = [n for n in found if _class_names(features, n) is not None]
        raise InputError(f"{path}: no label column {columns.label!r}; its columns are {found}. "
                         "Name the label column with --label-column (label_column= in Python)"
                         + (f", e.g. {labels[0]!r}" if labels else ""))
    if pa.types.is_nested(schema.field(columns.label).type):
        raise InputError(f"{path}: column {columns.label!r} holds "
                         f"{schema.field(columns.label).type}, several values a row; Sieve "
                         "audits one label per image: name such a column with --label-column")
    if columns.caption and columns.caption not in found:
        raise InputError(f"{path}: no caption column {columns.caption!r}; its columns are "
                         f"{found}. Name it with --caption-column, or leave the option out")


# --- rows --------------------------------------------------------------------------------------

def _rows(parts: list[Part], columns: HFColumns, root: Path,
          settings: Settings) -> Iterator[tuple[dict, str | None, float]]:
    """Every row of every split, with the fraction of the files' bytes read so far."""
    total = sum(path.stat().st_size for part in parts for path in part.files) or 1
    done = 0
    for part in parts:
        index = 0   # rows are numbered per split, across its files, as ds[i] numbers them
        for path in part.files:
            for row, error, position in _file_rows(path, part, columns, root, settings, index):
                index += 1
                yield row, error, min(0.99, (done + position) / total)
            done += path.stat().st_size


def _file_rows(path: Path, part: Part, columns: HFColumns, root: Path, settings: Settings,
               first_index: int) -> Iterator[tuple[dict, str | None, int]]:
    """(listing row, why it has no usable image, bytes read so far) for each row of a file;
    its rows are numbered from ``first_index``."""
    try:
        with open_regular_file(path) as handle:
            schema, batches = _open_batches(path, handle, columns)
            features = part.features or _schema_features(schema)
            _check_columns(path, schema, features, columns)
            names = _class_names(features, columns.label)
            index = first_index
            for batch in batches:
                for record in batch.to_pylist():
                    row, error = _row(record, index, part, columns, names, root, settings, path)
                    yield row, error, handle.tell()
                    index += 1
    except pa.ArrowException as exc:
        raise InputError(f"{path}: cannot be read as Arrow data ({exc}); save the dataset "
                         "again") from exc


def _open_batches(path: Path, handle: BinaryIO,
                  columns: HFColumns) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's schema and its batches of the named columns, ``ROWS_PER_CHUNK`` rows at most."""
    if path.suffix.lower() == ".parquet":
        parquet = pq.ParquetFile(handle)
        wanted = _present(parquet.schema_arrow, columns)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=ROWS_PER_CHUNK,
                                                          columns=wanted)
    reader = pa.ipc.open_stream(handle)
    wanted = _present(reader.schema, columns)
    return reader.schema, (batch.select(wanted).slice(offset, ROWS_PER_CHUNK)
                           for batch in reader for offset in range(0, batch.num_rows,
                                                                   ROWS_PER_CHUNK))


def _present(schema: pa.Schema, columns: HFColumns) -> list[str]:
    return [c for c in (columns.image, columns.label, columns.caption) if c in schema.names]


def _row(record: dict, index: int, part: Part, columns: HFColumns, names: list[str] | None,
         root: Path, settings: Settings, path: Path) -> tuple[dict, str | None]:
    where = f"{part.split} row {index}"
    image, error = _store_image(record[columns.image], f"{where}, column {columns.image!r}",
                                f"missing/{part.split}/{index}", root, settings.max_file_bytes)
    caption = record.get(columns.caption) if columns.caption else None
    return {"path": image, "label": _label(record[columns.label], names, columns.label, where,
                                           path),
            "split": part.sieve_split, "id": f"{part.split}/{index}",
            "caption": None if caption is None else str(caption)}, error


def _label(value, names: list[str] | None, column: str, where: str, path: Path) -> str:
    """The row's label as text: a ``ClassLabel`` index becomes its class name."""
    if value is None or (names is not None and value == -1):
        raise InputError(f"{path}: {where} has no label in column {column!r}"
                         f"{' (-1)' if value == -1 else ''}; drop the unlabelled rows before "
                         f"saving (ds.filter(lambda row: row[{column!r}] "
                         f"{'!= -1' if names is not None else 'is not None'})), or name another "
                         "column with --label-column")
    if names is None:
        return str(value)
    if not isinstance(value, int) or not 0 <= value < len(names):
        raise InputError(f"{path}: {where} has label {value!r} in column {column!r}, not one of "
                         f"its {len(names)} classes (0 to {len(names) - 1}); fix the row or the "
                         "ClassLabel names")
    return names[value]


def _store_image(cell, where: str, missing: str, root: Path,
                 max_bytes: int) -> tuple[str, str | None]:
    """Write the cell's image bytes once under ``root``: (path relative to it, why the row has
    no usable image or None). A row whose bytes are not written gets the path ``missing``."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None:
        named = cell.get("path") if isinstance(cell, dict) else None
        return missing, (f"{where}: no image bytes{f' (only the path {named!r})' if named else ''}"
                         "; save the dataset with its images embedded (save_to_disk and "
                         "to_parquet embed local image files) and ingest it again")
    refused = too_large(len(data), max_bytes)
    if refused:
        return missing, f"{where}: image {refused}"
    suffix, problem = _image_suffix(data)
    relative = _write_once(root, data, suffix)
    if problem:
        return relative, (f"{where}: the bytes are not an image ({problem}); fix or drop that "
                          "row and save the dataset again")
    return relative, None


def _image_suffix(data: bytes) -> tuple[str, str | None]:
    """The file suffix of the image format the bytes start with, and why they are not an image
    (None when they are); only the header is read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format or "bin"
    except UnidentifiedImageError:
        return ".bin", "unrecognised format"
    except (OSError, SyntaxError, ValueError) as exc:
        return ".bin", str(exc)
    return FORMAT_SUFFIXES.get(found, f".{found.lower()}"), None


def _write_once(root: Path, data: bytes, suffix: str) -> str:
    """Write ``data`` as ``root/<sha256[:2]>/<sha256><suffix>`` unless it is there (atomically,
    so two ingests of the same image never see half a file); the relative path."""
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{digest[:2]}/{digest}{suffix}"
    target = root / relative
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    return relative


def forget_images(data_home: Path, hashes: set[str]) -> int:
    """Remove the images written for these content hashes (Sieve's own copies, never a user's
    file); return how many. Call only with hashes no remaining dataset has."""
    folder = Path(data_home) / IMAGES_FOLDER
    removed = 0
    for sha256 in hashes:
        for path in (folder / sha256[:2]).glob(f"{sha256}.*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
