"""Principal directions of embeddings, fitted on an evenly strided sample of their rows (no
label used): the outlier detector's class Gaussians and the probe's input live on them."""

from __future__ import annotations

import numpy as np

SAMPLE_ROWS = 10_000


def principal_directions(x: np.ndarray, mean: np.ndarray, dims: int,
                         sample: int = SAMPLE_ROWS) -> np.ndarray:
    """The top ``dims`` principal directions of ``x`` centred on ``mean`` as the columns of a
    (d, dims) float32 array (fewer columns when the sample has fewer rows), fitted on every
    ``len(x) // sample``-th row: about ``sample`` rows, never a copy of all of them."""
    rows = np.asarray(x[:: max(1, len(x) // sample)], dtype=np.float32) - mean
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    return vt[:dims].T
