"""User-supplied arrays: embeddings (n, d) and out-of-sample pred_probs (n, K) as ``.npy``.

Row i of a supplied array belongs to the sample with ``row_index`` i (the order of the folder
listing or manifest). Arrays are read with ``allow_pickle=False`` and checked before any model
sees them; every problem is an ``InputError`` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.embedders import l2_normalise
from audit.errors import InputError

PROB_SUM_TOLERANCE = 1e-3


def load_array(path: str | Path, what: str) -> np.ndarray:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; give the path of a .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array without pickle ({exc}); save it "
                         "with numpy.save from a numeric array") from exc
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: {what} must be a numeric array, got dtype {array.dtype}")
    return array


def _check_rows(path: Path, array: np.ndarray, n_samples: int, what: str, width_hint: str) -> None:
    if array.ndim != 2 or array.shape[0] != n_samples:
        raise InputError(f"{path}: {what} has shape {array.shape}, expected ({n_samples}, "
                         f"{width_hint}): one row per sample of the dataset, in source order")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise InputError(f"{path}: {what} has NaN or infinite values in {len(bad)} row(s), first "
                         f"row {bad[0]}; recompute or drop those samples")


def load_embeddings(path: str | Path, n_samples: int) -> np.ndarray:
    """Checked, L2-normalised float32 embeddings, one row per sample (source order)."""
    array = load_array(path, "embeddings")
    _check_rows(Path(path), array, n_samples, "embeddings", "d")
    zero = np.flatnonzero(np.linalg.norm(array, axis=1) == 0)
    if len(zero):
        raise InputError(f"{path}: embeddings row {zero[0]} is all zeros ({len(zero)} such rows);"
                         " a zero vector has no direction, recompute it")
    return l2_normalise(array)


def load_pred_probs(path: str | Path, n_samples: int, n_classes: int) -> np.ndarray:
    """Checked pred_probs: (n, n_classes), non-negative rows summing to 1 (within tolerance)."""
    array = load_array(path, "pred_probs")
    _check_rows(Path(path), array, n_samples, "pred_probs", str(n_classes))
    if array.shape[1] != n_classes:
        raise InputError(f"{path}: pred_probs has {array.shape[1]} columns but the dataset has "
                         f"{n_classes} classes; columns must follow the sorted class names")
    _check_probabilities(Path(path), array)
    return (array / array.sum(axis=1, keepdims=True)).astype(np.float32)


def _check_probabilities(path: Path, array: np.ndarray) -> None:
    if (array < 0).any():
        row = int(np.flatnonzero((array < 0).any(axis=1))[0])
        raise InputError(f"{path}: pred_probs row {row} has a negative value; give probabilities")
    sums = array.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE)
    if len(off):
        raise InputError(f"{path}: pred_probs row {off[0]} sums to {sums[off[0]]:.4f}, not 1 "
                         f"({len(off)} such rows); apply softmax to logits before saving")
