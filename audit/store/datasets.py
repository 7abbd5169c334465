"""Datasets and their samples."""

from __future__ import annotations

import dataclasses

import pandas as pd

from audit.errors import InputError, NotFoundError
from audit.store.connection import Store
from audit.store.flags import STANDING_DECISIONS, standing_params
from audit.store.jobs import FINAL_JOB_STATES

SAMPLE_COLUMNS = [
    "sample_id", "row_index", "split", "path", "label", "caption",
    "width", "height", "file_size", "sha256", "load_error", "extra",
]
_COLUMN_LIST = ", ".join(SAMPLE_COLUMNS)
_INSERT_SAMPLES = (
    f"INSERT INTO samples (dataset_id, {_COLUMN_LIST}) SELECT ?, {_COLUMN_LIST} FROM incoming_samples"
)
_SELECT_SAMPLES = f"SELECT {_COLUMN_LIST} FROM samples WHERE dataset_id = ? ORDER BY row_index"
# Every row that belongs to a dataset, children first; jobs and their logs stay as history
# (the jobs list shows "(deleted dataset N)"). tests/audit/test_dataset_lifecycle.py checks that
# no table holding a dataset_id or run_id keeps a row of a deleted dataset.
_DELETE_DATASET = [
    "DELETE FROM scores WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM run_samples WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM run_neighbours WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM explore_rows WHERE run_id IN (SELECT id FROM runs WHERE dataset_id = ?)",
    "DELETE FROM explore_runs WHERE dataset_id = ?",
    "DELETE FROM runs WHERE dataset_id = ?",
    "DELETE FROM flags WHERE dataset_id = ?",
    "DELETE FROM samples WHERE dataset_id = ?",
    "DELETE FROM exports WHERE dataset_id = ?",
    "DELETE FROM saved_views WHERE dataset_id = ?",
    "DELETE FROM datasets WHERE id = ?",
]


_DATASET_COLUMNS = ("id, name, source, kind, root, created_at, version, parent_id, "
                    "carried_decisions, dropped_decisions")
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
    version: int = 1                 # 1 + its parent's; the newest version holds the plain name
    parent_id: int | None = None     # the version it was re-ingested from
    carried_decisions: int | None = None   # the parent's standing decisions it kept
    dropped_decisions: int | None = None   # ... and those it did not (changed or gone samples)


@dataclasses.dataclass(frozen=True)
class DeletedDataset:
    """What a deletion removed from the store, and the content hashes no other dataset has
    (their cached embeddings and thumbnails can go)."""
    samples: int
    runs: int
    decisions: int
    unshared_hashes: list[str]


def create_dataset(store: Store, name: str, source: str, kind: str, root: str,
                   samples: pd.DataFrame) -> int:
    """Insert a dataset and all its samples in one transaction; return its id."""
    frame = samples[SAMPLE_COLUMNS]
    with store.transaction() as con:
        # fetchall: DuckDB refuses register() while a result is only partly fetched
        if con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchall():
            raise InputError(
                f"a dataset named {name!r} already exists; choose another --name, make this a "
                f"new version of it with --new-version, or delete it with "
                f"`python -m audit delete {name}`"
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
            SELECT d.id, d.name, d.version, d.parent_id, d.kind, d.source, d.created_at,
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


def datasets_with_source(store: Store, source: str) -> list[DatasetRecord]:
    """The datasets ingested from this folder or manifest (an absolute, resolved path)."""
    with store.transaction() as con:
        rows = con.execute(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE source = ? ORDER BY id",
                           [source]).fetchall()
    return [DatasetRecord(*row) for row in rows]


def delete_dataset(store: Store, dataset_id: int) -> DeletedDataset:
    """Remove a dataset with its samples, runs, scores, decisions and exports in one
    transaction (jobs keep their history); refused while a job of it is queued or running."""
    with store.transaction() as con:
        name = _name_of(con, dataset_id)
        _refuse_active_jobs(con, dataset_id, name)
        counts = con.execute(
            "SELECT (SELECT count(*) FROM samples WHERE dataset_id = $id), "
            "(SELECT count(*) FROM runs WHERE dataset_id = $id), "
            "(SELECT count(*) FROM flags WHERE dataset_id = $id AND action <> 'undo')",
            {"id": dataset_id}).fetchone()
        hashes = _unshared_hashes(con, dataset_id)
        for statement in _DELETE_DATASET:
            con.execute(statement, [dataset_id])
    return DeletedDataset(*counts, unshared_hashes=hashes)


def _name_of(con, dataset_id: int) -> str:
    row = con.execute("SELECT name FROM datasets WHERE id = ?", [dataset_id]).fetchone()
    if row is None:
        raise NotFoundError(f"no dataset {dataset_id}; list them with `python -m audit datasets`")
    return row[0]


def _refuse_active_jobs(con, dataset_id: int, name: str) -> None:
    active = con.execute(
        "SELECT id, status FROM jobs WHERE dataset_id = ? AND NOT list_contains(?, status) "
        "ORDER BY id", [dataset_id, list(FINAL_JOB_STATES)]).fetchall()
    if active:
        job_id, status = active[0]
        raise InputError(
            f"dataset {name!r} has job {job_id} {status}; cancel it with `python -m audit cancel "
            f"{job_id}` (or wait for it to finish), then delete the dataset"
        )


def _unshared_hashes(con, dataset_id: int) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT sha256 FROM samples WHERE dataset_id = $id AND sha256 IS NOT NULL "
        "EXCEPT SELECT sha256 FROM samples WHERE dataset_id <> $id AND sha256 IS NOT NULL",
        {"id": dataset_id}).fetchall()
    return sorted(row[0] for row in rows)


def create_version(store: Store, name: str, source: str, kind: str, root: str,
                   samples: pd.DataFrame) -> int:
    """Store the samples as a new version of the dataset ``name``, in one transaction; return
    its id. The new version takes the name (without a ``@vN`` suffix) and the parent's
    version + 1; the parent is renamed ``NAME@vN`` and keeps its runs and decisions. The whole
    decision log of each unchanged sample (same id, label and content hash) is copied over in
    order, and how many standing decisions were carried and dropped is recorded."""
    with store.transaction() as con:
        row = _fetch(con, _SELECT_BY_NAME, name)
        if row is None:
            raise NotFoundError(f"no dataset named {name!r} to make a new version of; check "
                                "`python -m audit datasets`, or ingest without --new-version")
        parent = DatasetRecord(*row)
        _refuse_second_child(con, parent)
        base = _base_name(parent)
        _rename(con, parent, f"{base}@v{parent.version}")
        _check_name_free(con, base, parent.id)
        dataset_id = con.execute(
            "INSERT INTO datasets (name, source, kind, root, version, parent_id) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [base, source, kind, root, parent.version + 1, parent.id],
        ).fetchone()[0]
        con.register("incoming_samples", samples[SAMPLE_COLUMNS])
        con.execute(_INSERT_SAMPLES, [dataset_id])
        con.unregister("incoming_samples")
        _copy_unchanged_decisions(con, parent.id, dataset_id)
        _record_carried(con, parent.id, dataset_id)
    return int(dataset_id)


def _base_name(dataset: DatasetRecord) -> str:
    suffix = f"@v{dataset.version}"
    return dataset.name[: -len(suffix)] if dataset.name.endswith(suffix) else dataset.name


def _refuse_second_child(con, parent: DatasetRecord) -> None:
    child = con.execute("SELECT name FROM datasets WHERE parent_id = ?", [parent.id]).fetchone()
    if child:
        raise InputError(f"dataset {parent.name!r} already has a newer version {child[0]!r}; "
                         f"make the new version from that one (--name {child[0]})")


def _rename(con, dataset: DatasetRecord, name: str) -> None:
    if dataset.name != name:
        _check_name_free(con, name, dataset.id)
        con.execute("UPDATE datasets SET name = ? WHERE id = ?", [name, dataset.id])


def _check_name_free(con, name: str, owner_id: int) -> None:
    taken = con.execute("SELECT 1 FROM datasets WHERE name = ? AND id <> ?", [name, owner_id])
    if taken.fetchall():
        raise InputError(f"a dataset named {name!r} already exists and the new version needs "
                         f"that name; delete it first (`python -m audit delete {name}`)")


def _copy_unchanged_decisions(con, parent_id: int, dataset_id: int) -> None:
    """Copy the parent's log rows of unchanged samples, with fresh ids in the same order (the
    standing decision depends on it)."""
    rows = con.execute(
        "SELECT f.sample_id, f.action, f.new_label, f.note, f.author, f.created_at "
        "FROM flags f JOIN samples old ON old.dataset_id = f.dataset_id "
        "AND old.sample_id = f.sample_id JOIN samples new ON new.dataset_id = $new "
        "AND new.sample_id = old.sample_id AND new.label = old.label AND new.sha256 = old.sha256 "
        "WHERE f.dataset_id = $parent ORDER BY f.id",
        {"parent": parent_id, "new": dataset_id}).df()
    if rows.empty:
        return
    # drawn from the sequence (in any order), then sorted: the copies keep the log's order
    ids = con.execute("SELECT nextval('flag_ids') FROM range(?)", [len(rows)]).fetchall()
    rows.insert(0, "id", sorted(row[0] for row in ids))
    con.register("carried_flags", rows)
    con.execute("INSERT INTO flags (id, dataset_id, sample_id, action, new_label, note, author, "
                "created_at) SELECT id, ?, sample_id, action, new_label, note, author, created_at "
                "FROM carried_flags", [dataset_id])
    con.unregister("carried_flags")


def _record_carried(con, parent_id: int, dataset_id: int) -> None:
    standing = {key: _standing_count(con, key) for key in (parent_id, dataset_id)}
    con.execute("UPDATE datasets SET carried_decisions = ?, dropped_decisions = ? WHERE id = ?",
                [standing[dataset_id], standing[parent_id] - standing[dataset_id], dataset_id])


def _standing_count(con, dataset_id: int) -> int:
    return con.execute(f"SELECT count(*) FROM ({STANDING_DECISIONS})",
                       standing_params(dataset_id)).fetchone()[0]
