"""User-supplied arrays: embeddings (n, d) and out-of-sample pred_probs (n, K) as ``.npy``.

Row i of a supplied array belongs to the sample with ``row_index`` i (the order of the folder
listing or manifest); column k of pred_probs is class k of ``audit.classes.class_order``.
``python -m audit order DATASET --out DIR`` writes both orders (``write_order_files``). Arrays
are read with ``allow_pickle=False`` and checked before any model sees them; every problem is an
``InputError`` naming the file and the fix. pred_probs whose argmax agrees with the labels no
better than chance, or much better once its columns are permuted, are refused as misaligned.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from audit.embedders import check_vectors, l2_normalise
from audit.errors import InputError
from audit.images import open_regular_file

PROB_SUM_TOLERANCE = 1e-3
MIN_ROWS_FOR_AGREEMENT = 20     # fewer decisive rows: the agreement checks are skipped (noise)
CHANCE_MARGIN = 0.05            # observed agreement must beat chance by at least this ...
CHANCE_STANDARD_ERRORS = 3.0    # ... and by this many binomial standard errors
PERMUTED_GAIN = 0.2             # a column permutation agreeing this much better ...
PERMUTED_RATIO = 1.5            # ... and this many times better means permuted columns
SAMPLE_ORDER_COLUMNS = ["row_index", "sample_id", "split", "path", "label"]
ORDER_FIX = ("columns must follow the class order written by `python -m audit order DATASET "
             "--out DIR` (class_order.txt), or pass --class-order with the order your columns use")


def read_header(path: str | Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares, checked against the bytes it holds,
    without reading its data (a header may declare 80 GB in a 100-byte file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; give the path of a .npy file")
    try:
        with open_regular_file(path) as handle:
            shape, dtype = _parse_header(handle)
            held = os.fstat(handle.fileno()).st_size - handle.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array without pickle ({exc}); save it "
                         "with numpy.save from a numeric array") from exc
    if dtype.hasobject:
        raise InputError(f"{path}: not a readable .npy array without pickle (it holds Python "
                         "objects); save it with numpy.save from a numeric array")
    if not np.issubdtype(dtype, np.number):
        raise InputError(f"{path}: {what} must be a numeric array, got dtype {dtype}")
    declared = math.prod(shape) * dtype.itemsize
    if declared > held:
        raise InputError(f"{path}: its header declares a {what} array of shape {shape} "
                         f"({declared:,} bytes) but the file holds {held:,} bytes of data; the "
                         "file is truncated or damaged, save it again with numpy.save")
    return shape, dtype


def _parse_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(handle)
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _fortran_order, dtype = readers[version](handle)
    return shape, dtype


def check_supplied_file(path: str | Path, what: str, n_samples: int) -> None:
    """Before an audit is queued: the file's header declares one row per sample (2-D), and
    the file holds that much data. The values are checked when the audit loads them."""
    shape, _dtype = read_header(path, what)
    if len(shape) != 2 or shape[0] != n_samples:
        raise InputError(f"{Path(path).expanduser()}: {what} has shape {shape}, expected "
                         f"({n_samples}, ...): one row per sample of the dataset, in the order "
                         "`python -m audit order DATASET --out DIR` writes")


def load_array(path: str | Path, what: str) -> np.ndarray:
    read_header(path, what)
    path = Path(path).expanduser()
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array without pickle ({exc}); save it "
                         "with numpy.save from a numeric array") from exc
    except MemoryError:
        raise InputError(f"{path}: the {what} array does not fit in memory; reduce its width "
                         "or store it as float32") from None
    return array


def _check_shape(path: Path, array: np.ndarray, n_samples: int, what: str,
                 width_hint: str) -> None:
    if array.ndim != 2 or array.shape[0] != n_samples:
        raise InputError(f"{path}: {what} has shape {array.shape}, expected ({n_samples}, "
                         f"{width_hint}): one row per sample of the dataset, in source order")


def _check_rows(path: Path, array: np.ndarray, n_samples: int, what: str, width_hint: str) -> None:
    _check_shape(path, array, n_samples, what, width_hint)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise InputError(f"{path}: {what} has NaN or infinite values in {len(bad)} row(s), first "
                         f"row {bad[0]}; recompute or drop those samples")


def load_embeddings(path: str | Path, n_samples: int) -> np.ndarray:
    """Checked, L2-normalised float32 embeddings, one row per sample (source order): no NaN or
    infinite value, none beyond float32's range, no all-zero row (``check_vectors``, which
    names the first bad row)."""
    array = load_array(path, "embeddings")
    _check_shape(Path(path), array, n_samples, "embeddings", "d")
    check_vectors(array, str(path), np.arange(len(array)), "recompute or drop those samples")
    return l2_normalise(array, in_place=True)     # the array was read here: no second copy


def load_pred_probs(path: str | Path, n_samples: int, n_classes: int) -> np.ndarray:
    """Checked pred_probs: (n, n_classes), non-negative rows summing to 1 (within tolerance)."""
    array = load_array(path, "pred_probs")
    _check_rows(Path(path), array, n_samples, "pred_probs", str(n_classes))
    if array.shape[1] != n_classes:
        raise InputError(f"{path}: pred_probs has {array.shape[1]} columns but the dataset has "
                         f"{n_classes} classes; {ORDER_FIX}")
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


# --- does pred_probs agree with the labels? ----------------------------------------------

@dataclasses.dataclass(frozen=True)
class Agreement:
    """How often the argmax of pred_probs equals the given label, over the decisive rows."""

    rows: int             # rows whose largest probability is unique (ties carry no vote)
    observed: float       # share of those rows where argmax == label
    chance: float         # sum_k freq(label=k) * freq(argmax=k): agreement of unrelated columns
    best_permuted: float  # agreement once the columns are relabelled by the best permutation


def measure_agreement(labels: np.ndarray, pred_probs: np.ndarray) -> Agreement:
    """Observed, chance and best-permutation agreement of argmax(pred_probs) with ``labels``."""
    top_two = np.sort(pred_probs, axis=1)[:, -2:]
    decisive = top_two[:, 1] > top_two[:, 0]
    labels, predicted = labels[decisive], pred_probs[decisive].argmax(axis=1)
    rows, n_classes = len(labels), pred_probs.shape[1]
    if rows == 0:
        return Agreement(0, 0.0, 0.0, 0.0)
    label_freq = np.bincount(labels, minlength=n_classes) / rows
    argmax_freq = np.bincount(predicted, minlength=n_classes) / rows
    return Agreement(rows, float(np.mean(predicted == labels)), float(label_freq @ argmax_freq),
                     permuted_agreement(labels, predicted, n_classes))


def permuted_agreement(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Agreement after relabelling the columns by the best permutation (linear_sum_assignment on
    the label x argmax confusion matrix). The permutation is fitted on one half of each class's
    rows and scored on the other, both ways round, so that on few samples it cannot fit noise."""
    first_half = alternate_within_class(labels)
    hits = 0
    for fit in (first_half, ~first_half):
        column_to_label = best_column_labels(labels[fit], predicted[fit], n_classes)
        hits += int(np.sum(column_to_label[predicted[~fit]] == labels[~fit]))
    return hits / len(labels)


def alternate_within_class(labels: np.ndarray) -> np.ndarray:
    """True for every other row of each class (its 1st, 3rd, ... in row order)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels)
    return rank % 2 == 0


def best_column_labels(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """The label each column stands for under the permutation that agrees most with ``labels``."""
    from scipy.optimize import linear_sum_assignment

    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    given, column = linear_sum_assignment(confusion, maximize=True)
    mapping = np.empty(n_classes, dtype=np.int64)
    mapping[column] = given
    return mapping


def no_better_than_chance(agreement: Agreement) -> bool:
    """True when observed < chance + max(CHANCE_MARGIN, CHANCE_STANDARD_ERRORS * SE), with
    SE = sqrt(chance * (1 - chance) / rows), the binomial standard error of agreement at chance."""
    error = np.sqrt(agreement.chance * (1 - agreement.chance) / agreement.rows)
    margin = max(CHANCE_MARGIN, CHANCE_STANDARD_ERRORS * error)
    return agreement.observed < agreement.chance + margin


def looks_permuted(agreement: Agreement) -> bool:
    """True when some column permutation agrees with the labels at least PERMUTED_GAIN more and
    PERMUTED_RATIO times more than the columns as given."""
    return (agreement.best_permuted >= agreement.observed + PERMUTED_GAIN
            and agreement.best_permuted >= PERMUTED_RATIO * agreement.observed)


def check_label_agreement(path: str | Path, pred_probs: np.ndarray, labels: np.ndarray) -> None:
    """Refuse pred_probs that look misaligned with the labels: permuted columns, or an argmax
    that agrees with them no better than chance. Fewer than MIN_ROWS_FOR_AGREEMENT decisive rows
    (or one class) are too few to judge, and pass."""
    if pred_probs.shape[1] < 2:
        return
    agreement = measure_agreement(np.asarray(labels, dtype=np.int64), pred_probs)
    if agreement.rows < MIN_ROWS_FOR_AGREEMENT:
        return
    measured = (f"its argmax agrees with the given labels on {agreement.observed:.1%} of "
                f"{agreement.rows} samples, chance is {agreement.chance:.1%}")
    if looks_permuted(agreement):
        raise InputError(f"{path}: pred_probs columns look permuted: {measured}, but reordering "
                         f"the columns would agree on {agreement.best_permuted:.1%}; {ORDER_FIX}")
    if no_better_than_chance(agreement):
        raise InputError(f"{path}: pred_probs agrees with the labels no better than chance: "
                         f"{measured}; rows must follow sample_order.csv and {ORDER_FIX}")


# --- the orders a supplied array must follow ---------------------------------------------

def sample_order_frame(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per sample in the row order of supplied arrays (``row_index``)."""
    return samples.sort_values("row_index")[SAMPLE_ORDER_COLUMNS].reset_index(drop=True)


def write_order_files(samples: pd.DataFrame, class_names: list[str],
                      out_dir: str | Path) -> list[Path]:
    """``sample_order.csv`` (rows of a supplied array) and ``class_order.txt`` (columns of
    pred_probs, one class per line) in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir).expanduser()
    sample_path, class_path = out_dir / "sample_order.csv", out_dir / "class_order.txt"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(sample_path, sample_order_frame(samples).to_csv(index=False))
        write_atomically(class_path, "".join(f"{name}\n" for name in class_names))
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write the order files there ({exc.strerror or exc});"
                         " give a folder you can write (it is created if missing)") from exc
    return [sample_path, class_path]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, then rename it over ``path``."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
