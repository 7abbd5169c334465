"""Datasets and their samples."""

from __future__ import annotations

import dataclasses

import pandas as pd

from audit.errors import InputError, NotFoundError
from audit.store.connection import Store

SAMPLE_COLUMNS = [
    "sample_id", "row_index", "split", "path", "label", "caption",
    "width", "height", "file_size", "sha256", "load_error", "extra",
]
_COLUMN_LIST = ", ".join(SAMPLE_COLUMNS)
_INSERT_SAMPLES = (
    f"INSERT INTO samples (dataset_id, {_COLUMN_LIST}) SELECT ?, {_COLUMN_LIST} FROM incoming_samples"
)
_SELECT_SAMPLES = f"SELECT {_COLUMN_LIST} FROM samples WHERE dataset_id = ? ORDER BY row_index"
_DELETE_DATASET = [
    "DELETE FROM scores WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM run_samples WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM explore_rows WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM explore_runs WHERE dataset_id = ?",
    "DELETE FROM runs WHERE dataset_id = ?",
    "DELETE FROM flags WHERE dataset_id = ?",
    "DELETE FROM samples WHERE dataset_id = ?",
    "DELETE FROM exports WHERE dataset_id = ?",
    "DELETE FROM datasets WHERE id = ?",
]


_DATASET_COLUMNS = "id, name, source, kind, root, created_at"
_SELECT_BY_ID = f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = ?"
_SELECT_BY_NAME = f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE name = ?"
DATASET_REFERENCE = ("a dataset name or id: bare digits are an id or a name, refused when they "
                     "are one dataset's id and another's name; id:N or name:TEXT says which")


@dataclasses.dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    source: str
    kind: str
    root: str
    created_at: object


def create_dataset(store: Store, name: str, source: str, kind: str, root: str,
                   samples: pd.DataFrame) -> int:
    """Insert a dataset and all its samples in one transaction; return its id."""
    frame = samples[SAMPLE_COLUMNS]
    with store.transaction() as con:
        # fetchall: DuckDB refuses register() while a result is only partly fetched
        if con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchall():
            raise InputError(
                f"a dataset named {name!r} already exists; choose another --name or delete it"
            )
        dataset_id = con.execute(
            "INSERT INTO datasets (name, source, kind, root) VALUES (?, ?, ?, ?) RETURNING id",
            [name, source, kind, root],
        ).fetchone()[0]
        con.register("incoming_samples", frame)
        con.execute(_INSERT_SAMPLES, [dataset_id])
        con.unregister("incoming_samples")
    return int(dataset_id)


def get_dataset(store: Store, name_or_id: str | int) -> DatasetRecord:
    """Find a dataset: a number is an id; text is read as ``DATASET_REFERENCE`` says."""
    if not isinstance(name_or_id, str):
        kind, key = "id", str(int(name_or_id))
    else:
        kind, key = _parse_reference(name_or_id)
    with store.transaction() as con:
        by_id = _fetch(con, _SELECT_BY_ID, int(key)) if kind != "name" else None
        by_name = _fetch(con, _SELECT_BY_NAME, key) if kind != "id" else None
    if by_id and by_name and by_id[0] != by_name[0]:
        raise InputError(f"{key!r} is the id of dataset {by_id[1]!r} and the name of dataset "
                         f"{by_name[0]}; write id:{key} for the first or name:{key} for the second")
    row = by_id or by_name
    if row is None:
        raise NotFoundError(f"no dataset {name_or_id!r}; list them with `python -m audit datasets`")
    return DatasetRecord(*row)


def _parse_reference(text: str) -> tuple[str, str]:
    """("id" | "name" | "either", key) for a dataset reference a user typed."""
    if text.startswith("id:"):
        if not _is_digits(text[3:]):
            raise InputError(f"{text!r}: after id: give a dataset id (digits), or use name:")
        return "id", text[3:]
    if text.startswith("name:"):
        return "name", text[5:]
    return ("either" if _is_digits(text) else "name"), text


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _fetch(con, query: str, key: int | str) -> tuple | None:
    if isinstance(key, int) and key >= 2**63:
        return None  # no id is that large (and DuckDB could not bind it)
    return con.execute(query, [key]).fetchone()


def list_datasets(store: Store) -> pd.DataFrame:
    """One row per dataset with its sample, error, split and class counts."""
    with store.transaction() as con:
        return con.execute(
            """
            SELECT d.id, d.name, d.kind, d.source, d.created_at,
                   count(s.sample_id) AS samples,
                   count(s.load_error) AS load_errors,
                   count(DISTINCT s.split) AS splits,
                   count(DISTINCT s.label) AS classes
            FROM datasets d LEFT JOIN samples s ON s.dataset_id = d.id
            GROUP BY ALL ORDER BY d.id
            """
        ).df()


def samples_frame(store: Store, dataset_id: int) -> pd.DataFrame:
    """All samples of a dataset, in source order."""
    with store.transaction() as con:
        return con.execute(_SELECT_SAMPLES, [dataset_id]).df()


def delete_dataset(store: Store, dataset_id: int) -> None:
    """Remove a dataset, its samples, runs, scores and flags (jobs keep their history)."""
    with store.transaction() as con:
        for statement in _DELETE_DATASET:
            con.execute(statement, [dataset_id])
