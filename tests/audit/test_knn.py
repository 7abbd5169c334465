"""The shared kNN graph: exact against brute force, self excluded, k clipped, IVF recall."""

from __future__ import annotations

import numpy as np
import pytest

from audit.embedders import l2_normalise
from audit.errors import InputError
from audit.knn import build_knn_graph, drop_self, search_cells, torch_exact_search
from audit.processes import torch_threads


def clustered(n: int, dims: int = 16, centres: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dims))
    return l2_normalise(means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dims)))


def brute_force(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, 1.0 - np.take_along_axis(similarity, order, 1)


def test_exact_graph_matches_brute_force_and_excludes_self():
    vectors = clustered(300)
    graph = build_knn_graph(vectors, k=7)
    expected_indices, expected_distances = brute_force(vectors, 7)
    assert graph.exact is True
    assert graph.indices.shape == (300, 7) and graph.indices.dtype == np.int64
    assert not (graph.indices == np.arange(300)[:, None]).any()
    np.testing.assert_allclose(graph.distances, expected_distances, atol=1e-5)
    assert (graph.indices == expected_indices).mean() > 0.99   # ties may swap order
    assert np.all(np.diff(graph.distances, axis=1) >= -1e-6)


def test_k_is_clipped_to_n_minus_one():
    graph = build_knn_graph(clustered(4), k=10)
    assert graph.indices.shape == (4, 3)
    assert sorted(graph.indices[0].tolist()) == [1, 2, 3]


def test_exact_duplicates_find_each_other_at_distance_zero():
    vectors = clustered(50)
    vectors[10] = vectors[20]
    graph = build_knn_graph(vectors, k=3)
    assert graph.indices[10, 0] == 20 and graph.indices[20, 0] == 10
    assert graph.distances[10, 0] == pytest.approx(0.0, abs=1e-6)


def test_drop_self_when_ties_hide_the_sample_itself():
    indices = np.array([[1, 2, 0], [1, 0, 2], [0, 1, 3]])   # row 2 lacks itself: drop last
    similarities = np.array([[1.0, 0.5, 0.4], [1.0, 0.9, 0.1], [1.0, 1.0, 0.2]])
    kept, sims = drop_self(indices, similarities, 2)
    assert kept.tolist() == [[1, 2], [0, 2], [0, 1]]
    assert sims[1].tolist() == [0.9, 0.1]


def test_approximate_index_beyond_the_exact_limit_has_high_recall():
    vectors = clustered(4000, dims=32, centres=20)
    graph = build_knn_graph(vectors, k=10, exact_limit=1000)
    exact = build_knn_graph(vectors, k=10)
    assert graph.exact is False and exact.exact is True
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(graph.indices, exact.indices)])
    assert recall > 0.9
    assert not (graph.indices == np.arange(4000)[:, None]).any()


def test_rows_of_a_cell_that_few_rows_probe_still_get_k_real_neighbours():
    vectors = clustered(3000, dims=16, centres=10)
    lonely = l2_normalise(np.random.default_rng(5).normal(size=(1, 16))
                          + 0.01 * np.random.default_rng(6).normal(size=(3, 16)))
    vectors = np.concatenate([vectors, lonely])            # 3 rows far from all the others
    graph = build_knn_graph(vectors, k=10, exact_limit=1000)
    exact = build_knn_graph(vectors, k=10)
    assert (graph.indices >= 0).all() and (graph.distances < 2).all()
    assert not (graph.indices == np.arange(len(vectors))[:, None]).any()
    for row in range(3000, 3003):          # each other first, then the nearest of the rest
        assert set(graph.indices[row, :2]) == set(exact.indices[row, :2])
        assert len(set(graph.indices[row]) & set(exact.indices[row])) >= 7


def test_cells_searched_side_by_side_give_each_cells_exact_top_k_in_cell_order():
    vectors = clustered(2000).astype(np.float32)
    rng = np.random.default_rng(1)
    sizes = [(0, 30), (3, 5), (50, 200), (400, 900), (7, 12), (120, 11)]
    queries = [np.sort(rng.choice(2000, q, replace=False)) for q, _ in sizes]
    candidates = [np.sort(rng.choice(2000, c, replace=False)) for _, c in sizes]
    with torch_threads(1):
        one_thread = search_cells(queries, candidates, vectors=vectors, width=11)
    with torch_threads(3):
        three_threads = search_cells(queries, candidates, vectors=vectors, width=11)
    for alone, side_by_side in zip(one_thread, three_threads):
        np.testing.assert_array_equal(alone, side_by_side)
    indices, similarities = three_threads
    assert len(indices) == sum(len(q) for q in queries)
    start = 0
    for cell_queries, cell_candidates in zip(queries, candidates):
        rows = slice(start, start + len(cell_queries))
        take = min(11, len(cell_candidates))
        scores = vectors[cell_queries] @ vectors[cell_candidates].T
        np.testing.assert_allclose(similarities[rows, :take],
                                   -np.sort(-scores, axis=1)[:, :take], atol=1e-6)
        found = np.take_along_axis(scores, np.searchsorted(cell_candidates,
                                                           indices[rows, :take]), 1)
        np.testing.assert_allclose(found, similarities[rows, :take], atol=1e-6)
        assert (indices[rows, take:] == -1).all()
        start += len(cell_queries)


def test_drop_self_refuses_a_row_with_missing_hits():
    """A row padded with -1 would keep itself among its neighbours; refused, not returned."""
    indices = np.array([[0, 1, 2], [1, 0, -1]])
    with pytest.raises(ValueError, match="row 1 has missing hits"):
        drop_self(indices, np.ones((2, 3), np.float32), 2)


def test_chunked_torch_search_equals_faiss(monkeypatch):
    import audit.knn as knn

    monkeypatch.setattr(knn, "GPU_SCORE_BYTES", 4 * 200 * 48)   # chunks of 48 queries on 200 rows
    assert knn.query_chunk(200) == 48
    vectors = clustered(200)
    indices, similarities = torch_exact_search(vectors, 6, "cpu")
    kept, _ = drop_self(indices, similarities, 5)
    expected, _ = brute_force(vectors, 5)
    assert (kept == expected).mean() > 0.99


def test_the_gpu_search_holds_at_most_a_gibibyte_of_scores_at_once():
    """4,096 queries against 1M rows would hold 16 GiB of scores on the GPU at once."""
    from audit.knn import query_chunk

    assert query_chunk(10_000) == 4096                      # the cap: 164 MB of scores
    assert query_chunk(1_000_000) == 268                    # 1.07 GB (1 GiB) of scores
    assert query_chunk(10_000_000) == 26
    assert query_chunk(2**40) == 1                          # never none
    for rows in (10_000, 1_000_000, 10_000_000):
        assert query_chunk(rows) * rows * 4 <= 2**30


def test_fewer_than_two_samples_is_a_clear_error():
    with pytest.raises(InputError, match="at least 2 samples"):
        build_knn_graph(clustered(1), k=5)
