"""Embeddings that cannot stand for an image are refused, supplied or computed (issue 14):
values near float32's limit keep their direction instead of overflowing to zero vectors, and a
``.npy`` header that declares more data than the file holds is refused before any allocation."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib import format as npy_format

from audit.ingest import ingest
from audit.embedders import Embedding, l2_normalise
from audit.errors import InputError
from audit.plan import run_audit
from audit.store import runs
from audit.supplied import check_supplied_file, load_array, load_embeddings
from tests.audit.numeric_dataset import N_SAMPLES, write_numeric_dataset

pytestmark = pytest.mark.reliability


def _clustered(n: int = N_SAMPLES, dims: int = 8) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(12, dims))[np.arange(n) % 12]
            + 0.1 * rng.normal(size=(n, dims))).astype(np.float32)


def test_values_near_the_float32_limit_keep_their_direction(tmp_path) -> None:
    vectors = _clustered()
    np.save(tmp_path / "huge.npy", vectors / np.abs(vectors).max() * np.float32(1e38))
    loaded = load_embeddings(tmp_path / "huge.npy", N_SAMPLES)
    np.testing.assert_allclose(loaded, l2_normalise(vectors), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(loaded, axis=1), 1.0, atol=1e-6)


def test_an_audit_on_huge_embeddings_scores_as_on_the_same_embeddings_unscaled(
        tmp_path, store, settings) -> None:
    dataset_id = ingest(store, write_numeric_dataset(tmp_path / "numbers"), settings)
    vectors = _clustered()
    np.save(tmp_path / "plain.npy", vectors)
    np.save(tmp_path / "huge.npy", vectors / np.abs(vectors).max() * np.float32(1e38))
    scores = []
    for name in ("plain", "huge"):
        run_id = run_audit(store, settings, dataset_id, {
            "detectors": ["knn_label"], "probe": "logistic", "loader_workers": 0, "k": 5,
            "embeddings_file": str(tmp_path / f"{name}.npy")})
        assert runs.get_run(store, run_id)["status"] == "succeeded"
        scores.append(runs.scores_frame(store, run_id).sort_values("sample_id")["score"])
    np.testing.assert_allclose(scores[1].to_numpy(), scores[0].to_numpy(), atol=1e-3)


@pytest.mark.parametrize("value, problem, dtype", [
    (1e39, "beyond float32's range", np.float64), (np.inf, "NaN or infinite", np.float64),
    (0.0, "all zeros", np.float64), (np.nan, "NaN or infinite", np.float32),
    (-np.inf, "NaN or infinite", np.float32), (0.0, "all zeros", np.float32)])
def test_overflowing_non_finite_or_zero_supplied_rows_are_refused(tmp_path, value, problem,
                                                                  dtype) -> None:
    """float64 files are checked through float64, float32 files as they are."""
    vectors = _clustered().astype(dtype)
    vectors[4] = value
    np.save(tmp_path / "bad.npy", vectors)
    with pytest.raises(InputError, match=f"row 4.*{problem}|{problem}.*row 4") as caught:
        load_embeddings(tmp_path / "bad.npy", N_SAMPLES)
    assert str(tmp_path / "bad.npy") in str(caught.value)


@pytest.mark.parametrize("value, problem",
                         [(0.0, "is all zeros"), (np.nan, "has a NaN or infinite")])
def test_a_computed_degenerate_row_is_refused_unless_it_failed(value, problem) -> None:
    vectors = l2_normalise(_clustered(6))
    vectors[2] = value
    with pytest.raises(InputError, match=f"embedder tiny-model: embeddings row 2 {problem}"):
        Embedding(vectors, "tiny-model")
    Embedding(vectors, "tiny-model", failed={2: "cannot decode"})  # a failed row may be empty


def test_a_header_declaring_80_gb_is_refused_without_allocating(tmp_path) -> None:
    path = tmp_path / "liar.npy"
    with open(path, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (20_000_000_000, 1)})
        handle.write(b"\0" * 64)
    for load in (lambda: load_array(path, "pred_probs"),
                 lambda: check_supplied_file(path, "pred_probs", 20_000_000_000)):
        with pytest.raises(InputError, match=r"declares a pred_probs array of shape "
                                             r"\(20000000000, 1\) \(80,000,000,000 bytes\) but "
                                             r"the file holds 64 bytes"):
            load()


def test_checks_and_normalising_read_in_chunks_give_the_whole_arrays_answer(
        tmp_path, monkeypatch) -> None:
    """With chunks of 7 rows, a bad row in a later chunk is still the first one named, every
    bad row is counted, and normalised rows equal the whole-array computation."""
    import audit.embedders as embedders

    vectors = _clustered(50)
    whole = l2_normalise(vectors)
    monkeypatch.setattr(embedders, "CHUNK_ROWS", 7)
    assert np.array_equal(l2_normalise(vectors), whole)
    np.save(tmp_path / "plain.npy", vectors)
    assert np.array_equal(load_embeddings(tmp_path / "plain.npy", 50), whole)   # in place
    assert np.array_equal(l2_normalise(vectors.copy(), in_place=True), whole)
    assert not np.array_equal(vectors, whole)       # a caller's array is left as it was
    vectors[[23, 41, 48]] = 0.0
    np.save(tmp_path / "zeros.npy", vectors)
    with pytest.raises(InputError, match=r"row 23 is all zeros .*\(3 such row\(s\)\)"):
        load_embeddings(tmp_path / "zeros.npy", 50)
