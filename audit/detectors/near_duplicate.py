"""near_duplicate: exact duplicates (same sha256), copies that survive a shift, crop, resize or
re-encode (perceptual hash and pixel content), near duplicates (embedding distance far below the
typical nearest-neighbour distance), duplicate sets and train/test leakage.

Four kinds of pair, each enough on its own:

- file hash: identical sha256;
- perceptual hash: 64-bit pHashes (``audit.perceptual_hash``) at most ``radius`` bits apart,
  where ``radius = min(params["hash_radius"], median - hash_z * spread)`` of the nearest-hash
  distance of up to 1,000 sampled rows (spread = 1.4826 MAD, at least 2 bits). Chance
  collisions grow with n^2 and with how alike a dataset's images are: low-detail images such as
  the demo's 8 x 8 digits have distinct images 2-4 bits apart (median nearest 8-10 bits ->
  radius -1 to 1, so pHash adds nothing there), photos rarely below 10-16 (median 16-20 ->
  radius 7-8). Fewer than 50 hashed rows use ``hash_radius`` as is (chance pairs are rare in
  so few). A row whose image cannot be decoded gets no hash;
- pixel content: the embedding's rule below, applied to the DC term and the 64 low DCT
  frequencies that the pHash binarises, kept as numbers and L2-normalised (a uniform scaling
  of the grey levels drops out; a re-coloured copy, whose contrast against its brightness
  changes, does not match).
  Unlike the binary hash it tells re-scans of low-detail images from distinct ones (the demo's
  digits); unlike the embedding it does not depend on what the embedder finds semantically
  alike (an ImageNet network puts distinct digits about as close as re-scans);
- embedding: cosine distance below ``threshold * median(nearest-neighbour distance)``
  (cleanlab Datalab's rule, threshold 0.13).

Duplicate sets are the connected components of those pairs. Every member of a set is an issue
(an export keeps one per set). A set that holds a training example and an evaluation (val/test)
example is a leak: ``details["leak"]``. Score = the lowest of ``1 - exp(-d / median)`` (``d``
the nearest-neighbour distance in the embedding or the pixel-content space, as in Datalab),
``cut * (bits + 1) / (radius + 2)`` for a perceptual-hash pair ``bits`` apart
(``cut = 1 - exp(-threshold)``, the score at the embedding rule's edge, so every pair ranks
below every unpaired example) and 0 for an identical file. The detector runs with the kNN
graph, the pixels, or both. The hashes and frequencies come from ``audit.image_measures`` (one
decode per image, shared with ``image_quality``, on the run's executor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audit import perceptual_hash
from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame

MAX_DUPLICATES_SHOWN = 5
TRAIN_SPLIT = "train"
FILE_HASH, PERCEPTUAL_HASH, CONTENT, EMBEDDING = 0, 1, 2, 3
METHOD_NAMES = ("file hash", "perceptual hash", "pixel content", "embedding")
CALIBRATION_ROWS = 1000
MIN_CALIBRATION_ROWS = 50
MIN_SPREAD_BITS = 2.0


# --- pairs ---------------------------------------------------------------------------------

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


def calibrated_radius(nearest: np.ndarray, max_radius: int, z: float) -> int:
    """The Hamming radius for pHash pairs: ``z`` robust spreads below the median distance to
    the nearest other hash, and never above ``max_radius``."""
    if len(nearest) < MIN_CALIBRATION_ROWS:
        return int(max_radius)
    median = float(np.median(nearest))
    spread = max(1.4826 * float(np.median(np.abs(nearest - median))), MIN_SPREAD_BITS)
    return int(min(max_radius, np.floor(median - z * spread)))


def phash_radius(hashes: np.ndarray, max_radius: int, z: float, seed: int) -> int:
    """``calibrated_radius`` on up to CALIBRATION_ROWS rows drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    count = min(CALIBRATION_ROWS, len(hashes))
    rows = np.sort(rng.choice(len(hashes), size=count, replace=False))
    return calibrated_radius(perceptual_hash.nearest_distances(hashes, rows), max_radius, z)


def phash_pairs(hashes: np.ndarray, hashed: np.ndarray,
                radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, 2) pairs of hashed rows at most ``radius`` bits apart, and their distances."""
    rows = np.flatnonzero(hashed)
    local = perceptual_hash.pairs_within_radius(hashes[rows], radius)
    pairs = rows[local].reshape(-1, 2)
    return pairs, perceptual_hash.hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]])


def content_neighbours(low: np.ndarray, hashed: np.ndarray, seed: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Nearest other image of every hashed row by pixel content: the rows, their neighbours'
    rows and cosine distances as (m, 1) arrays; None with fewer than 3 hashed rows."""
    from audit.knn import build_knn_graph

    rows = np.flatnonzero(hashed)
    if len(rows) < 3:
        return None
    vectors = low[rows] / np.maximum(np.linalg.norm(low[rows], axis=1, keepdims=True), 1e-9)
    graph = build_knn_graph(vectors.astype(np.float32), 1, seed=seed)
    return rows, rows[graph.indices], graph.distances


def content_evidence(low: np.ndarray, hashed: np.ndarray, threshold: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-content pairs (the rule of ``near_pairs``) and a score per row (1 if unhashed)."""
    score = np.ones(len(hashed))
    found = content_neighbours(low, hashed, seed)
    if found is None:
        return np.empty((0, 2), dtype=np.int64), score
    rows, neighbours, distances = found
    local = near_pairs(np.searchsorted(rows, neighbours), distances, threshold)
    score[rows] = embedding_scores(distances, len(rows))
    return rows[local].reshape(-1, 2), score


def pair_table(sha: np.ndarray, phash: np.ndarray, bits: np.ndarray, content: np.ndarray,
               embedding: np.ndarray) -> pd.DataFrame:
    """Every pair in both directions: row, other, method, bits (-1 unless pHash)."""
    parts = [(sha, FILE_HASH, np.full(len(sha), -1)), (phash, PERCEPTUAL_HASH, bits),
             (content, CONTENT, np.full(len(content), -1)),
             (embedding, EMBEDDING, np.full(len(embedding), -1))]
    frames = [pd.DataFrame({"row": p[:, a], "other": p[:, 1 - a], "method": method,
                            "bits": np.asarray(b, dtype=np.int64)})
              for p, method, b in parts for a in (0, 1)]
    table = pd.concat(frames, ignore_index=True)
    return table[table["row"] != table["other"]].reset_index(drop=True)


# --- sets and leaks ------------------------------------------------------------------------

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


# --- scores --------------------------------------------------------------------------------

def embedding_scores(distances: np.ndarray | None, n: int) -> np.ndarray:
    """``1 - exp(-d / median d)`` of the nearest-neighbour distance; 1 without a kNN graph."""
    if distances is None:
        return np.ones(n)
    nearest = distances[:, 0].astype(np.float64)
    return 1.0 - np.exp(-nearest / max(float(np.median(nearest)), 1e-12))


def duplicate_scores(base: np.ndarray, pairs: pd.DataFrame, radius: int,
                     threshold: float) -> np.ndarray:
    """The base score, lowered for pHash pairs (by their bits) and to 0 for identical files."""
    score = np.array(base, dtype=np.float64)
    cut = 1.0 - np.exp(-threshold)
    phash = pairs[pairs["method"] == PERCEPTUAL_HASH]
    hash_score = cut * (phash["bits"].to_numpy() + 1.0) / (max(radius, 0) + 2.0)
    np.minimum.at(score, phash["row"].to_numpy(), hash_score)
    score[pairs.loc[pairs["method"] == FILE_HASH, "row"].to_numpy()] = 0.0
    return np.clip(score, 0.0, 1.0)


# --- details -------------------------------------------------------------------------------

def duplicate_details(set_id: np.ndarray, leaks: set[int], pairs: pd.DataFrame,
                      neighbours: np.ndarray | None, sample_ids: list[str]) -> list[dict]:
    members = pd.Series(np.arange(len(set_id)))[set_id >= 0].groupby(set_id[set_id >= 0])
    members = {int(s): rows.to_numpy() for s, rows in members}
    links = partner_lists(pairs)
    return [_one_detail(i, int(s), members, leaks, links.get(i),
                        None if neighbours is None else neighbours[i], sample_ids)
            for i, s in enumerate(set_id)]


def partner_lists(pairs: pd.DataFrame) -> dict[int, list[list[int]]]:
    """Row -> its [method, bits, other] links, strongest first (file hash, pHash by bits)."""
    ordered = pairs.sort_values(["row", "method", "bits"], kind="stable")
    rows = ordered["row"].to_numpy()
    links = ordered[["method", "bits", "other"]].to_numpy().tolist()
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else rows
    ends = np.r_[starts[1:], len(rows)]
    return {int(rows[s]): links[s:e] for s, e in zip(starts, ends)}


def _one_detail(row, set_no, members, leaks, links, neighbours, sample_ids) -> dict:
    if set_no < 0:
        return {"reason": "no other example is (nearly) identical"}
    others = _ordered_members(row, members[set_no], links, neighbours)
    methods = sorted({method for method, _, _ in links})
    leak = set_no in leaks
    reason = (f"{_kind(links[0])}: a set of {len(others) + 1}"
              + (" spanning train and test" if leak else ""))
    detail = {"reason": reason, "set_id": set_no, "leak": leak,
              "duplicate_of": [sample_ids[j] for j in others[:MAX_DUPLICATES_SHOWN]],
              "found_by": [METHOD_NAMES[m] for m in methods]}
    if PERCEPTUAL_HASH in methods:
        detail["hash_bits"] = min(bits for method, bits, _ in links if method == PERCEPTUAL_HASH)
    return detail


def _ordered_members(row, members, links, neighbours) -> list[int]:
    """The row's direct partners (identical file, then pHash by bits, then pixel content and
    embedding by kNN rank) first, then the rest of its set by kNN rank."""
    rank = {} if neighbours is None else {int(j): r for r, j in enumerate(neighbours)}
    rank_of = lambda j: rank.get(int(j), len(rank))  # noqa: E731
    by_strength = sorted(links, key=lambda link: (link[0], link[1], rank_of(link[2])))
    direct = list(dict.fromkeys(other for _, _, other in by_strength))
    rest = sorted((int(j) for j in members if j != row and j not in direct), key=rank_of)
    return direct + rest


def _kind(strongest: list[int]) -> str:
    method, bits, _ = strongest
    if method == FILE_HASH:
        return "identical file"
    if method == PERCEPTUAL_HASH:
        return f"near-identical image (perceptual hash, {bits} of 64 bits differ)"
    if method == CONTENT:
        return "near-identical image (pixel content)"
    return "near-identical image (embedding)"


# --- pixels --------------------------------------------------------------------------------

def hash_evidence(hashes: np.ndarray, hashed: np.ndarray, params: dict, seed: int,
                  progress: Progress) -> tuple[np.ndarray, np.ndarray, int]:
    """pHash pairs, their bits and the radius used (none when the radius comes out negative)."""
    empty = np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64), -1
    if hashed.sum() < 2 or params["hash_radius"] < 0:
        return empty
    radius = phash_radius(hashes[hashed], params["hash_radius"], params["hash_z"], seed)
    if radius < 0:
        progress(0.95, "perceptual hashes too alike in this dataset to tell copies apart")
        return empty
    progress(0.95, f"comparing perceptual hashes within {radius} bits")
    return (*phash_pairs(hashes, hashed, radius), radius)


def pixel_evidence(inputs: DetectorInputs, params: dict, progress: Progress) -> dict:
    """pHash and pixel-content pairs with the content score (empty without pixels)."""
    none = np.empty((0, 2), dtype=np.int64)
    evidence = {"phash": none, "bits": np.empty(0, dtype=np.int64), "radius": -1,
                "content": none, "content_score": np.ones(inputs.n)}
    if inputs.load_image is None:
        return evidence
    measures = inputs.image_measures(lambda fraction, message: progress(0.9 * fraction, message))
    hashes, low, hashed = measures.phash, measures.frequencies, measures.decoded
    evidence["phash"], evidence["bits"], evidence["radius"] = hash_evidence(
        hashes, hashed, params, inputs.seed, progress)
    evidence["content"], evidence["content_score"] = content_evidence(
        low, hashed, params["threshold"], inputs.seed)
    return evidence


@register
class NearDuplicate(Detector):
    name = "near_duplicate"
    family = "duplicate"
    params = {"threshold": 0.13, "hash_radius": 8, "hash_z": 3.0}
    description = ("Exact duplicates (same file hash), copies that survive a shift, crop or "
                   "re-encode (perceptual hash, pixel content) and near duplicates (embedding "
                   "distance far below the typical one), grouped in sets; train/test leakage.")

    def missing_requirements(self, inputs: DetectorInputs) -> str | None:
        if inputs.knn is None and inputs.load_image is None:
            return "needs the kNN graph or the pixels, and this run has neither"
        return None

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        knn = inputs.knn
        pixels = pixel_evidence(inputs, params, progress)
        embedding = (np.empty((0, 2), dtype=np.int64) if knn is None
                     else near_pairs(knn.indices, knn.distances, params["threshold"]))
        pairs = pair_table(hash_pairs(inputs.sha256), pixels["phash"], pixels["bits"],
                           pixels["content"], embedding)
        set_id = duplicate_sets(inputs.n, pairs[["row", "other"]].to_numpy())
        leaks = leaking_sets(set_id, np.asarray(inputs.splits))
        base = np.minimum(embedding_scores(None if knn is None else knn.distances, inputs.n),
                          pixels["content_score"])
        score = duplicate_scores(base, pairs, pixels["radius"], params["threshold"])
        details = duplicate_details(set_id, leaks, pairs, None if knn is None else knn.indices,
                                    inputs.sample_ids)
        progress(1.0, f"{int((set_id >= 0).sum())} examples in {int(set_id.max() + 1)} sets")
        return result_frame(inputs, score, set_id >= 0, details)
