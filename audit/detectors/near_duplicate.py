"""near_duplicate: exact duplicates (same sha256), near duplicates (embedding distance far
below the typical nearest-neighbour distance), duplicate sets and train/test leakage.

Two examples are near duplicates when their cosine distance is below
``threshold * median(nearest-neighbour distance)`` (cleanlab Datalab's rule, threshold 0.13);
identical file hashes are always duplicates. Duplicate sets are the connected components of
those pairs. Every member of a set is an issue (an export keeps one per set). A set that holds
a training example and an evaluation (val/test) example is a leak: ``details["leak"]``.
Score = ``1 - exp(-d / median)`` with ``d`` the nearest-neighbour distance (0 for an exact
duplicate), as in Datalab.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame

MAX_DUPLICATES_SHOWN = 5
TRAIN_SPLIT = "train"


def near_pairs(indices: np.ndarray, distances: np.ndarray, threshold: float) -> np.ndarray:
    """(m, 2) pairs of rows closer than ``threshold`` times the median nearest distance."""
    radius = threshold * max(float(np.median(distances[:, 0])), 1e-12)
    rows, cols = np.nonzero(distances < radius)
    return np.stack([rows, indices[rows, cols]], axis=1)


def hash_pairs(sha256: list[str | None]) -> np.ndarray:
    """(m, 2) pairs linking every example to the first one with the same content hash."""
    first: dict[str, int] = {}
    pairs = [(i, first.setdefault(h, i)) for i, h in enumerate(sha256) if h]
    return np.array([p for p in pairs if p[0] != p[1]], dtype=np.int64).reshape(-1, 2)


def duplicate_sets(n: int, pairs: np.ndarray) -> np.ndarray:
    """Set id per row: the connected component over the pairs, -1 for a row with no pair."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    in_set = sizes[component] > 1
    _, renumbered = np.unique(component[in_set], return_inverse=True)
    set_id = np.full(n, -1, dtype=np.int64)
    set_id[in_set] = renumbered
    return set_id


def leaking_sets(set_id: np.ndarray, splits: np.ndarray) -> set[int]:
    """Sets that hold both a training example and an example of another split."""
    frame = pd.DataFrame({"set": set_id, "train": splits == TRAIN_SPLIT})[set_id >= 0]
    mixed = frame.groupby("set")["train"].agg(["any", "all"])
    return set(mixed.index[mixed["any"] & ~mixed["all"]].tolist())


def duplicate_scores(distances: np.ndarray, set_id: np.ndarray, sha256: list) -> np.ndarray:
    nearest = distances[:, 0].astype(np.float64)
    score = 1.0 - np.exp(-nearest / max(float(np.median(nearest)), 1e-12))
    exact = _exact_rows(sha256)
    score[exact] = 0.0
    return np.clip(score, 0.0, 1.0)


def _exact_rows(sha256: list) -> np.ndarray:
    hashes = pd.Series(sha256)
    return (hashes.notna() & hashes.duplicated(keep=False)).to_numpy()


def duplicate_details(set_id, leaks, indices, sample_ids, sha256) -> list[dict]:
    members = pd.Series(np.arange(len(set_id)))[set_id >= 0].groupby(set_id[set_id >= 0])
    members = {int(s): rows.to_numpy() for s, rows in members}
    exact = _exact_rows(sha256)
    return [_one_detail(i, int(s), members, leaks, indices[i], sample_ids, exact[i])
            for i, s in enumerate(set_id)]


def _one_detail(row, set_no, members, leaks, neighbors, sample_ids, exact) -> dict:
    if set_no < 0:
        return {"reason": "no other example is (nearly) identical"}
    others = [j for j in members[set_no] if j != row]
    order = {j: rank for rank, j in enumerate(neighbors)}
    others.sort(key=lambda j: order.get(j, len(order)))
    kind = "identical file" if exact else "near-identical image"
    leak = set_no in leaks
    reason = f"{kind}: a set of {len(others) + 1}" + (" spanning train and test" if leak else "")
    shown = [sample_ids[j] for j in others[:MAX_DUPLICATES_SHOWN]]
    return {"reason": reason, "duplicate_of": shown, "set_id": set_no, "leak": leak}


@register
class NearDuplicate(Detector):
    name = "near_duplicate"
    requires = frozenset({"knn"})
    params = {"threshold": 0.13}
    description = ("Exact duplicates (same file hash) and near duplicates (embedding distance "
                   "far below the typical one), grouped in sets; train/test leakage.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        params = {**self.params, **params}
        knn = inputs.knn
        pairs = np.concatenate([near_pairs(knn.indices, knn.distances, params["threshold"]),
                                hash_pairs(inputs.sha256)])
        set_id = duplicate_sets(inputs.n, pairs)
        leaks = leaking_sets(set_id, np.asarray(inputs.splits))
        score = duplicate_scores(knn.distances, set_id, inputs.sha256)
        details = duplicate_details(set_id, leaks, knn.indices, inputs.sample_ids, inputs.sha256)
        progress(1.0, f"{int((set_id >= 0).sum())} examples in {int(set_id.max() + 1)} sets")
        return result_frame(inputs, score, set_id >= 0, details)
