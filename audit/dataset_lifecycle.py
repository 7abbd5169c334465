"""A dataset's life after ingestion: what a deletion removes, the summary of a new version,
and the warning when one folder is ingested twice.

Deleting a dataset removes its rows from the store in one transaction (refused while a job of
it is queued or running; ``audit.store.datasets.delete_dataset``), then the cached embeddings
and thumbnails of the images no other dataset has (and, for a Hugging Face dataset, the image
copies Sieve wrote under the data home). It never touches the user's image files, a
manifest, or the files an export wrote. A new version is made by
``audit.ingest.ingest(..., new_version=True)`` (``audit.store.datasets.create_version``).
"""

from __future__ import annotations

import dataclasses

from audit.embedders.cache import forget_hashes
from audit.hf_datasets import forget_images
from audit.settings import Settings
from audit.store import Store
from audit.store import datasets as dataset_store
from audit.store.datasets import DatasetRecord
from audit.thumbnails import forget_thumbnails


@dataclasses.dataclass(frozen=True)
class Deletion:
    """What deleting one dataset removed."""
    dataset: DatasetRecord
    samples: int
    runs: int
    decisions: int
    cache_files: int

    def summary(self) -> str:
        return (f"deleted dataset {self.dataset.name!r} (id {self.dataset.id}): {self.samples} "
                f"samples, {self.runs} run(s), {self.decisions} decision(s), {self.cache_files} "
                f"cached file(s); the files in {self.dataset.source} were not touched")


def delete_dataset(store: Store, settings: Settings, dataset: DatasetRecord) -> Deletion:
    """Delete the dataset's rows, then the caches of its images no other dataset has."""
    removed = dataset_store.delete_dataset(store, dataset.id)
    hashes = set(removed.unshared_hashes)
    cache_files = (forget_hashes(settings.data_home, hashes) + forget_thumbnails(settings, hashes)
                   + forget_images(settings.data_home, hashes))
    return Deletion(dataset, removed.samples, removed.runs, removed.decisions, cache_files)


def confirmation_question(dataset: DatasetRecord, samples: int) -> str:
    """What a person is asked before a deletion."""
    return (f"Delete dataset {dataset.name!r} (id {dataset.id}, {samples} samples) with its runs, "
            f"scores, decisions and cached embeddings and thumbnails? The files in "
            f"{dataset.source} stay.")


def version_summary(dataset: DatasetRecord, parent: DatasetRecord) -> str:
    """One line on a new version: which decisions of its parent it kept."""
    return (f"{dataset.name!r} is now version {dataset.version} (id {dataset.id}); the previous "
            f"version is {parent.name!r} (id {parent.id}). Decisions carried over from unchanged "
            f"files: {dataset.carried_decisions}; dropped (file changed or gone): "
            f"{dataset.dropped_decisions}")


def same_source_warning(store: Store, dataset: DatasetRecord) -> str | None:
    """A warning when the dataset's folder or manifest is already another dataset (the newest
    version of it), naming it and how to make a version instead; None otherwise."""
    same = dataset_store.datasets_with_source(store, dataset.source)
    parents = {other.parent_id for other in same}
    others = [o for o in same if o.id != dataset.id and o.id not in parents]
    if not others:
        return None
    earlier = others[0]
    return (f"{dataset.source} was already ingested as dataset {earlier.name!r} (id {earlier.id}); "
            f"{dataset.name!r} is a separate dataset that starts with no decisions. To make a new "
            f"version of {earlier.name!r} instead, which keeps the decisions of unchanged files, "
            f"delete {dataset.name!r} and ingest again with "
            f"`python -m audit ingest {dataset.source} --name {earlier.name} --new-version` "
            "(on the Datasets page: tick \"New version\")")
