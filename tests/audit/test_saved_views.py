"""Named saved views of Explore, per dataset, in a real DuckDB file."""

from __future__ import annotations

import pandas as pd
import pytest

from audit.errors import InputError, NotFoundError
from audit.store import Store
from audit.store.datasets import SAMPLE_COLUMNS, create_dataset, delete_dataset
from audit.store.saved_views import delete_view, list_views, load_view, save_view

FLIPS = {"detector": "label_issue", "flagged": False, "score": 0.3, "class": ["cat", "dog"],
         "page": 2}


def _dataset(store: Store, name: str) -> int:
    samples = pd.DataFrame({
        "sample_id": ["a"], "row_index": [0], "split": "train", "path": ["a.png"], "label": "cat",
        "caption": None, "width": 4, "height": 4, "file_size": 10, "sha256": "x",
        "load_error": None, "extra": None,
    })[SAMPLE_COLUMNS]
    return create_dataset(store, name, f"/src/{name}", "manifest", f"/src/{name}", samples)


def test_a_saved_view_comes_back_as_saved(store: Store) -> None:
    dataset_id = _dataset(store, "pets")
    save_view(store, dataset_id, "  label flips  ", FLIPS)
    view = load_view(store, dataset_id, "label flips")
    assert (view.name, view.params) == ("label flips", FLIPS)
    assert [v.name for v in list_views(store, dataset_id)] == ["label flips"]


def test_views_are_per_dataset_and_listed_by_name(store: Store) -> None:
    pets, cars = _dataset(store, "pets"), _dataset(store, "cars")
    save_view(store, pets, "worst", {})
    save_view(store, pets, "another", {"page": 3})
    save_view(store, cars, "worst", {"split": ["test"]})     # the same name in another dataset
    assert [v.name for v in list_views(store, pets)] == ["another", "worst"]
    assert load_view(store, cars, "worst").params == {"split": ["test"]}
    assert load_view(store, pets, "worst").params == {}


@pytest.mark.parametrize("name", ["", "   ", None])
def test_an_empty_name_is_refused(store: Store, name) -> None:
    dataset_id = _dataset(store, "pets")
    with pytest.raises(InputError, match="needs a name"):
        save_view(store, dataset_id, name, FLIPS)
    assert list_views(store, dataset_id) == []


def test_a_duplicate_name_is_refused_and_the_first_view_kept(store: Store) -> None:
    dataset_id = _dataset(store, "pets")
    save_view(store, dataset_id, "flips", FLIPS)
    with pytest.raises(InputError, match="already has a saved view named 'flips'"):
        save_view(store, dataset_id, " flips", {"page": 9})
    assert load_view(store, dataset_id, "flips").params == FLIPS


def test_delete_removes_one_view(store: Store) -> None:
    dataset_id = _dataset(store, "pets")
    save_view(store, dataset_id, "flips", FLIPS)
    save_view(store, dataset_id, "all", {"flagged": False})
    delete_view(store, dataset_id, "flips")
    assert [v.name for v in list_views(store, dataset_id)] == ["all"]
    with pytest.raises(NotFoundError, match="no saved view named 'flips'"):
        load_view(store, dataset_id, "flips")
    with pytest.raises(NotFoundError, match="no saved view named 'flips'"):
        delete_view(store, dataset_id, "flips")


def test_a_view_of_a_missing_dataset_is_refused(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no dataset with id 42"):
        save_view(store, 42, "flips", FLIPS)


def test_deleting_a_dataset_deletes_its_views(store: Store) -> None:
    pets, cars = _dataset(store, "pets"), _dataset(store, "cars")
    save_view(store, pets, "flips", FLIPS)
    save_view(store, cars, "flips", FLIPS)
    delete_dataset(store, pets)
    with store.transaction() as con:
        owners = con.execute("SELECT DISTINCT dataset_id FROM saved_views").fetchall()
    assert owners == [(cars,)]
