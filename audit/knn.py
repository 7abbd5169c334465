"""The shared kNN graph: built once per run, read by every detector that needs neighbours.

Cosine distance on L2-normalised vectors (distance = 1 - inner product). On the CPU: an exact
FAISS ``IndexFlatIP`` up to ``EXACT_LIMIT`` samples; beyond it, where exact search grows with
n squared, an approximate cluster search (spherical k-means cells from FAISS; each row meets
the rows that count its cell among their ``NPROBE`` nearest cells, one matrix product per cell;
the limit's speed is measured in bench/bench_engine_speed.py). The k-means centroids are trained
once here, on a sample. Every vector's nearest cells are found by inner products in the
centroids' top ``ASSIGN_DIMS`` singular directions, a quarter of the arithmetic of 512-d; the
cells only choose which candidates a vector meets, the search itself stays exact in full
dimension. Recall@10 (1,000 queries against brute force, bench/bench_knn_recall.py): synthetic
200k 0.988; the CIFAR-10N imagenet embeddings (1,904-d) forced through this search 0.774, where
the earlier search by cell (each cell's rows against the members of the 8 cells nearest its
centroid, the same work) found 0.618 (docs/benchmarks.md). The few rows that meet fewer
candidates than k are searched again (``_complete_short_rows``), so every row has k real
neighbours. Assigning (ranges of rows) and the cells' searches (groups of cells) run through
the run's executor (``audit.executors``: in this process, or as Ray tasks sharing the vectors);
within a group, the cells are searched by one Python thread per core the process may use.
On a GPU, exact search with torch matmul + top-k, in chunks of queries whose scores against
every row fit in ``GPU_SCORE_BYTES``. The sample itself is excluded and k is
clipped to n - 1; ``exact`` records which search was used.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from audit.detectors.base import KnnGraph
from audit.errors import InputError
from audit.executors import TASKS_PER_SLOT, LocalExecutor, row_ranges
from audit.processes import torch_threads

EXACT_LIMIT = 20_000
NPROBE = 8
TRAIN_POINTS_PER_LIST = 12
KMEANS_ITERATIONS = 6
ASSIGN_DIMS = 128      # cells are assigned in the centroids' top 128 directions (module doc)
BLOCK_QUERIES = 2048
GPU_QUERY_CHUNK = 4096            # queries searched at once on a GPU, at most ...
GPU_SCORE_BYTES = 1 << 30         # ... and as many as keep their float32 scores against every
                                  # row within 1 GiB: 268 at 1M rows (4,096 would need 16 GiB)


def build_knn_graph(embeddings: np.ndarray, k: int, device: str = "cpu",
                    exact_limit: int = EXACT_LIMIT, seed: int = 0, executor=None) -> KnnGraph:
    """The k nearest neighbours of every row (self excluded), nearest first; the approximate
    search's cell assignment and cell searches are mapped by ``executor`` (this process when
    None)."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(vectors)
    if n < 2:
        raise InputError(f"a neighbour graph needs at least 2 samples, this run has {n}")
    k = min(k, n - 1)
    if device == "cuda":
        indices, similarities, exact = *torch_exact_search(vectors, k + 1, device), True
    elif n <= exact_limit:
        indices, similarities, exact = *_flat_search(vectors, k + 1), True
    else:
        indices, similarities, exact = *_cluster_search(vectors, k + 1, seed,
                                                        executor or LocalExecutor()), False
    indices, similarities = drop_self(indices, similarities, k)
    distances = np.clip(1.0 - similarities, 0.0, 2.0).astype(np.float32)
    return KnnGraph(indices=indices.astype(np.int64), distances=distances, exact=exact)


def drop_self(indices: np.ndarray, similarities: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, when ties hid it, the farthest hit); keep k per row.
    Every row must hold k hits besides itself (no -1, FAISS's mark of a missing hit: the
    searches complete short rows first), else ``ValueError``: a row would keep itself."""
    if (indices < 0).any():
        row = int(np.argmax((indices < 0).any(axis=1)))
        raise ValueError(f"kNN row {row} has missing hits (-1): fewer than {k} neighbours")
    rows = np.arange(len(indices))[:, None]
    is_self = indices == rows
    extra = is_self.sum(axis=1) - (indices.shape[1] - k)
    for row in np.flatnonzero(extra < 0):        # self not among the hits: drop the farthest
        is_self[row, extra[row]:] = True
    keep = ~is_self
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(indices, order, 1), np.take_along_axis(similarities, order, 1)


def _flat_search(vectors: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarities, indices = index.search(vectors, width)
    return indices, similarities


def _cluster_search(vectors: np.ndarray, width: int, seed: int,
                    executor) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search by clusters: row r meets the rows that probe r's own cell, that is
    count it among their ``NPROBE`` nearest cells.

    An IVF index probes the other way (r meets the members of r's nearest cells); by symmetry
    the true neighbours found are about as many (CIFAR-10N: 0.774 against 0.798), but here all
    the rows of a cell share their candidates, so each cell is one matrix product at BLAS speed
    instead of streaming candidate lists from memory once per query. sqrt(NPROBE * n) cells
    balance assignment and search cost.
    """
    n, dims = vectors.shape
    cells = max(1, min(int(math.sqrt(NPROBE * n)), n // TRAIN_POINTS_PER_LIST))
    centroids = _spherical_kmeans(vectors, cells, seed)
    basis = centroid_basis(centroids)
    probes = min(NPROBE, cells)
    nearest_cells = np.concatenate(executor.map(
        assign_cells, row_ranges(n, executor.slots()),
        {"vectors": vectors, "centroids": centroids @ basis, "basis": basis, "probes": probes},
        what="kNN cell assignment"))
    members = _rows_by_cell(nearest_cells[:, 0], cells)
    probers = [rows // probes for rows in _rows_by_cell(nearest_cells.ravel(), cells)]
    groups = np.array_split(np.arange(cells), min(cells, TASKS_PER_SLOT * executor.slots()))
    arguments = [([members[c] for c in group], [probers[c] for c in group])
                 for group in groups]
    found = executor.map(search_cells, arguments, {"vectors": vectors, "width": width},
                         what="kNN cell groups")
    indices = np.empty((n, width), dtype=np.int64)
    similarities = np.empty((n, width), dtype=np.float32)
    for (queries, _), (group_indices, group_similarities) in zip(arguments, found):
        rows = np.concatenate(queries)
        indices[rows], similarities[rows] = group_indices, group_similarities
    _complete_short_rows(vectors, indices, similarities, nearest_cells, members, probers)
    return indices, similarities


def _complete_short_rows(vectors: np.ndarray, indices: np.ndarray, similarities: np.ndarray,
                         nearest_cells: np.ndarray, members: list[np.ndarray],
                         probers: list[np.ndarray]) -> None:
    """Search again the rows that met fewer candidates than the graph's width (a cell few rows
    probe; 16 of CIFAR-10N's 10,000 rows): among their probers and the members of their own
    nearest cells, as an IVF index probes, or among all rows if that is still too few."""
    base = torch.from_numpy(vectors)
    width = indices.shape[1]
    for row in np.flatnonzero(indices[:, -1] < 0):
        candidates = np.union1d(probers[nearest_cells[row, 0]],
                                np.concatenate([members[cell] for cell in nearest_cells[row]]))
        if len(candidates) < width:
            candidates = np.arange(len(vectors))
        _search_block(base, np.array([row]), candidates, width,
                      indices[row:row + 1], similarities[row:row + 1])


def centroid_basis(centroids: np.ndarray, dims: int = ASSIGN_DIMS) -> np.ndarray:
    """(d, dims) orthonormal columns: the centroids' top right singular vectors (uncentred, so
    inner products with the centroids are kept), or the identity when d <= dims."""
    if centroids.shape[1] <= dims:
        return np.eye(centroids.shape[1], dtype=np.float32)
    _, _, vt = np.linalg.svd(centroids.astype(np.float64), full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T, dtype=np.float32)


def _rows_by_cell(cells_of: np.ndarray, cells: int) -> list[np.ndarray]:
    """For each cell, the positions in ``cells_of`` that name it, in order."""
    return np.split(np.argsort(cells_of, kind="stable"),
                    np.cumsum(np.bincount(cells_of, minlength=cells))[:-1])


def assign_cells(start: int, stop: int, *, vectors: np.ndarray, centroids: np.ndarray,
                 basis: np.ndarray, probes: int) -> np.ndarray:
    """The ``probes`` nearest cells of each of the rows ``start``..``stop``, nearest first
    ((rows, probes) int64): the projected ``centroids`` (``centroids @ basis``) nearest to the
    row projected on ``basis``."""
    return _nearest(centroids, vectors[start:stop] @ basis, probes)[1]


def search_cells(queries_per_cell: list[np.ndarray], candidates_per_cell: list[np.ndarray], *,
                 vectors: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``width`` of each cell's queries among its candidates; rows in the order of
    the cells' queries, one after another.

    The cells are searched side by side by as many Python threads as torch has threads (one
    in a Ray task given one CPU), each cell on one thread of numpy's and torch's: the gathers
    and the top-k, on one thread either way, no longer leave the other core idle while the
    product waits for them (the cells' searches of a 1M graph: 43 -> 32.5 s on 2 cores, the
    same results; docs/benchmarks.md)."""
    with warnings.catch_warnings():   # Ray shares ``vectors`` read-only; they are only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        base = torch.from_numpy(vectors)
    starts = np.cumsum([0] + [len(queries) for queries in queries_per_cell])
    indices = np.empty((starts[-1], width), dtype=np.int64)
    similarities = np.empty((starts[-1], width), dtype=np.float32)

    def search(cell: int) -> None:
        block = slice(starts[cell], starts[cell + 1])
        _search_block(base, queries_per_cell[cell], candidates_per_cell[cell], width,
                      indices[block], similarities[block])

    threads = torch.get_num_threads()
    with torch_threads(1), threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        list(pool.map(search, range(len(queries_per_cell))))
    return indices, similarities


def _spherical_kmeans(vectors: np.ndarray, cells: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), cells * TRAIN_POINTS_PER_LIST),
                                replace=False)]
    kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=KMEANS_ITERATIONS, seed=seed,
                          spherical=True, min_points_per_centroid=1)
    kmeans.train(sample)
    return kmeans.centroids


def _nearest(base: np.ndarray, queries: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), width)


def _search_block(base: torch.Tensor, queries: np.ndarray, candidates: np.ndarray, width: int,
                  indices: np.ndarray, similarities: np.ndarray) -> None:
    """Exact top-``width`` of ``queries`` among ``candidates`` (padded when there are fewer),
    written to row i of ``indices`` and ``similarities`` for ``queries[i]``.

    Rows are gathered by ``index_select`` (2.8x faster than indexing with a tensor), the
    product is numpy's (OpenBLAS; torch's MKL took 20% longer on an AMD EPYC) and the top-k is
    torch's, each on one thread (``search_cells``): with two each, torch's spinning threads and
    OpenBLAS's slowed each other down 1.8x (docs/benchmarks.md)."""
    pool = base.index_select(0, torch.from_numpy(candidates)).numpy()
    take = min(width, len(candidates))
    for start in range(0, len(queries), BLOCK_QUERIES):
        rows = slice(start, start + BLOCK_QUERIES)
        scores = base.index_select(0, torch.from_numpy(queries[rows])).numpy() @ pool.T
        top = torch.topk(torch.from_numpy(scores), take, dim=1)
        found = candidates[top.indices.numpy()]
        indices[rows, :take], similarities[rows, :take] = found, top.values.numpy()
        indices[rows, take:], similarities[rows, take:] = -1, -np.inf


def torch_exact_search(vectors: np.ndarray, width: int,
                       device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact search in chunks of queries (``query_chunk``): one matmul and one top-k per
    chunk."""
    base = torch.as_tensor(vectors, device=device)
    chunk = query_chunk(len(vectors))
    indices, similarities = [], []
    for start in range(0, len(vectors), chunk):
        scores = base[start:start + chunk] @ base.T
        top = torch.topk(scores, width, dim=1)
        indices.append(top.indices.cpu().numpy())
        similarities.append(top.values.float().cpu().numpy())
    return np.concatenate(indices), np.concatenate(similarities)


def query_chunk(rows: int) -> int:
    """Queries per chunk of the GPU's exact search over ``rows`` rows: their (chunk, rows)
    float32 scores stay within ``GPU_SCORE_BYTES``; at least 1, at most ``GPU_QUERY_CHUNK``."""
    return int(min(GPU_QUERY_CHUNK, max(1, GPU_SCORE_BYTES // (4 * rows))))
