"""Principal axes: the SVD's subspace from the scatter matrix, signs fixed, one fit per run."""

import numpy as np

from audit.principal import principal_axes
from tests.audit.detector_inputs import make_inputs


def test_the_axes_span_the_svds_top_directions_with_their_signs_fixed():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3_000, 40)) * np.linspace(5, 0.1, 40)).astype(np.float32)
    x = x @ np.linalg.qr(rng.normal(size=(40, 40)))[0].astype(np.float32) + 3.0
    axes = principal_axes(x, sample=1_000)                 # every 3rd row
    sampled = x[::3] - x.mean(axis=0)
    svd_top = np.linalg.svd(sampled, full_matrices=False)[2][:10].T
    assert axes.directions.shape == (40, 40) and axes.directions.dtype == np.float32
    assert np.allclose(axes.mean, x.mean(axis=0), atol=1e-5)
    assert np.allclose(axes.directions.T @ axes.directions, np.eye(40), atol=1e-5)
    assert np.allclose(np.abs(axes.top(10).T @ svd_top), np.eye(10), atol=1e-4)
    variances = ((sampled @ axes.directions) ** 2).sum(axis=0)
    assert (np.diff(variances) <= 1e-3 * variances[0]).all()          # by decreasing variance
    largest = np.abs(axes.directions).argmax(axis=0)
    assert (axes.directions[largest, np.arange(40)] > 0).all()
    assert axes.top(10).flags["C_CONTIGUOUS"] and axes.top(99).shape == (40, 40)


def test_fewer_rows_than_dimensions_keep_one_direction_per_row_spanning_them():
    x = np.random.default_rng(1).normal(size=(30, 200)).astype(np.float32)
    axes = principal_axes(x)                                    # by the sample's SVD
    assert axes.directions.shape == (200, 30)
    assert np.allclose(axes.directions.T @ axes.directions, np.eye(30), atol=1e-5)
    centred = x - axes.mean
    assert np.allclose(centred @ axes.directions @ axes.directions.T, centred, atol=1e-4)
    largest = np.abs(axes.directions).argmax(axis=0)
    assert (axes.directions[largest, np.arange(30)] > 0).all()


def test_detector_inputs_fit_the_axes_once_unless_the_run_passed_them():
    vectors = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    labels = np.arange(50) % 2
    inputs = make_inputs(labels, vectors)
    first = inputs.principal_axes()
    assert inputs.principal_axes() is first and np.allclose(first.mean, vectors.mean(axis=0))
    given = principal_axes(vectors)
    assert make_inputs(labels, vectors, fitted_axes=given).principal_axes() is given
