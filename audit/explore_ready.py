"""What the worker makes ready when a run succeeds, so that opening the run in Explore builds
nothing: the run's Explore index and the thumbnails of the page Explore opens on."""

from __future__ import annotations

from audit.errors import InputError
from audit.images import ImageLoadError
from audit.settings import Settings
from audit.store import Store
from audit.store.explore import ensure_explore_index, explore_page, opening_filters
from audit.store.lookups import dataset_root
from audit.store.runs import get_run
from audit.thumbnails import thumbnail


def make_ready_for_explore(store: Store, settings: Settings, run_id: int) -> int:
    """Build the run's Explore index and the thumbnails of Explore's opening page; returns how
    many thumbnails that page shows. An image that cannot be shown is left for the page to
    explain, as it does for any other page."""
    detectors = ensure_explore_index(store, run_id)
    dataset_id = int(get_run(store, run_id)["dataset_id"])
    rows = explore_page(store, dataset_id, run_id, opening_filters(detectors)).rows
    root = dataset_root(store, dataset_id)
    made = 0
    for row in rows.itertuples(index=False):
        if isinstance(row.load_error, str):
            continue
        try:
            thumbnail(settings, root, row.path, row.sha256)
            made += 1
        except (ImageLoadError, InputError):
            continue
    return made
