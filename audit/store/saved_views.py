"""Named saved views of Explore, per dataset (table ``saved_views``, migration 9).

A view is the JSON object of Explore's URL parameters that differ from their defaults
(filters, sort, page); its name is unique within its dataset. What the parameters mean, and
which values are still valid for a run, is the page's business: the store keeps them as given.
"""

from __future__ import annotations

import dataclasses
import datetime
import json

from audit.errors import InputError, NotFoundError
from audit.store.connection import Store


@dataclasses.dataclass(frozen=True)
class SavedView:
    name: str
    params: dict
    created_at: datetime.datetime


def save_view(store: Store, dataset_id: int, name: str, params: dict) -> SavedView:
    """Store a new view under ``name`` (surrounding spaces dropped); an empty name or one the
    dataset already uses is an ``InputError``."""
    name = _checked_name(name)
    text = json.dumps(params, sort_keys=True)
    with store.transaction() as con:
        _require_dataset(con, dataset_id)
        if _row(con, dataset_id, name) is not None:
            raise InputError(f"dataset {dataset_id} already has a saved view named {name!r}; "
                             "pick another name, or delete that view first")
        con.execute("INSERT INTO saved_views (dataset_id, name, params) VALUES (?, ?, ?)",
                    [dataset_id, name, text])
        return _view(_row(con, dataset_id, name))


def list_views(store: Store, dataset_id: int) -> list[SavedView]:
    """The dataset's saved views, by name."""
    with store.transaction() as con:
        rows = con.execute("SELECT name, params, created_at FROM saved_views "
                           "WHERE dataset_id = ? ORDER BY name", [dataset_id]).fetchall()
    return [_view(row) for row in rows]


def load_view(store: Store, dataset_id: int, name: str) -> SavedView:
    with store.transaction() as con:
        row = _row(con, dataset_id, name)
    if row is None:
        raise NotFoundError(_missing(dataset_id, name))
    return _view(row)


def delete_view(store: Store, dataset_id: int, name: str) -> None:
    with store.transaction() as con:
        if _row(con, dataset_id, name) is None:
            raise NotFoundError(_missing(dataset_id, name))
        con.execute("DELETE FROM saved_views WHERE dataset_id = ? AND name = ?",
                    [dataset_id, name])


def _checked_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InputError("a saved view needs a name; type one, then save")
    return name


def _require_dataset(con, dataset_id: int) -> None:
    if con.execute("SELECT 1 FROM datasets WHERE id = ?", [dataset_id]).fetchone() is None:
        raise NotFoundError(f"no dataset with id {dataset_id}; list them with "
                            "`python -m audit datasets`")


def _row(con, dataset_id: int, name: str) -> tuple | None:
    return con.execute("SELECT name, params, created_at FROM saved_views "
                       "WHERE dataset_id = ? AND name = ?", [dataset_id, name]).fetchone()


def _view(row: tuple) -> SavedView:
    name, params, created_at = row
    return SavedView(name, json.loads(params), created_at)


def _missing(dataset_id: int, name: str) -> str:
    return (f"dataset {dataset_id} has no saved view named {name!r} (deleted in another tab?); "
            "pick one from the list")
