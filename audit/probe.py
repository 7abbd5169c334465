"""Out-of-sample predicted probabilities: a K-fold cross-fitted logistic-regression probe.

Folds are stratified by label and seeded. For each fold a multinomial logistic regression
(L2-regularised, full-batch L-BFGS in torch, so the same code runs on a GPU) is trained on the
other folds and predicts the held-out fold, so no sample's probabilities come from a model that
saw its label. Small classes are handled, not crashed on: folds are reduced to the sample count,
and classes with fewer members than folds are named in the notes (their held-out members may
meet a model that never saw their class, which is the honest answer for a singleton).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from audit.errors import InputError

INVERSE_REGULARISATION = 10.0   # sklearn's C: the penalty is |W|^2 / (2 C n)
LBFGS_STEPS = 20
MAX_TRAIN_ROWS = 25_000         # per fold: ~5 rows per weight of a 512-d, 10-class probe


@dataclasses.dataclass
class ProbeResult:
    pred_probs: np.ndarray   # float32 (n, n_classes), rows sum to 1
    folds: np.ndarray        # int64 (n,): the fold each sample was held out in
    n_folds: int
    notes: list[str]


def stratified_folds(labels: np.ndarray, folds: int,
                     seed: int) -> tuple[np.ndarray, int, list[str]]:
    """A seeded fold per sample, each class spread evenly; returns (fold_of, n_folds, notes)."""
    labels = np.asarray(labels)
    n_folds = min(folds, len(labels))
    if n_folds < 2:
        raise InputError(f"cross-fitting needs at least 2 samples, this dataset has {len(labels)}")
    notes = [] if n_folds == folds else [f"folds reduced from {folds} to {n_folds} (only "
                                         f"{len(labels)} samples)"]
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    return fold_of, n_folds, notes + _small_class_notes(labels, n_folds)


def _small_class_notes(labels: np.ndarray, n_folds: int) -> list[str]:
    values, counts = np.unique(labels, return_counts=True)
    small = [f"{v} ({c})" for v, c in zip(values, counts) if c < n_folds]
    if not small:
        return []
    return [f"classes with fewer members than the {n_folds} folds (their out-of-sample "
            f"probabilities are unreliable): {', '.join(small[:10])}"]


def cross_fit_probe(embeddings: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5,
                    seed: int = 0, device: str = "cpu") -> ProbeResult:
    """Held-out probabilities of a logistic-regression probe for every sample."""
    labels = np.array(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise InputError("out-of-sample probabilities need at least two classes; this dataset "
                         "has one, so label checks cannot run (add the other classes)")
    fold_of, n_folds, notes = stratified_folds(labels, folds, seed)
    features = torch.as_tensor(np.asarray(embeddings, dtype=np.float32), device=device)
    targets = torch.as_tensor(labels, device=device)
    probs = np.zeros((len(labels), n_classes), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for fold in range(n_folds):
        held = np.flatnonzero(fold_of == fold)
        train = training_rows(np.flatnonzero(fold_of != fold), labels, rng)
        train_rows = torch.as_tensor(train, device=device)
        weights, bias = fit_logistic(features[train_rows], targets[train_rows], n_classes, seed)
        probs[held] = _softmax(features[torch.as_tensor(held, device=device)], weights,
                               bias).cpu().numpy()
    if len(labels) * (n_folds - 1) / n_folds > MAX_TRAIN_ROWS:
        notes.append(f"each fold's probe trained on a seeded random sample of {MAX_TRAIN_ROWS:,} "
                     "rows (every class kept)")
    return ProbeResult(probs, fold_of, n_folds, notes)


def training_rows(candidates: np.ndarray, labels: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """All candidate rows, or a seeded sample of MAX_TRAIN_ROWS that keeps every class."""
    if len(candidates) <= MAX_TRAIN_ROWS:
        return candidates
    order = rng.permutation(candidates)
    first_of_class = order[np.unique(labels[order], return_index=True)[1]]
    rest = order[~np.isin(order, first_of_class)][:MAX_TRAIN_ROWS - len(first_of_class)]
    return np.sort(np.concatenate([first_of_class, rest]))


def fit_logistic(features: torch.Tensor, targets: torch.Tensor, n_classes: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2-penalised as sklearn's (C), by full-batch L-BFGS.

    No feature scaling: embeddings are L2-normalised and the variance of a direction is part
    of its meaning (standardising would blow up noise directions)."""
    torch.manual_seed(seed)
    penalty = 1.0 / (2.0 * INVERSE_REGULARISATION * len(targets))
    weights = torch.zeros(features.shape[1], n_classes, device=features.device, requires_grad=True)
    bias = torch.zeros(n_classes, device=features.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=LBFGS_STEPS,
                                  history_size=10, line_search_fn="strong_wolfe",
                                  tolerance_change=1e-7)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weights + bias, targets) \
            + penalty * weights.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach(), bias.detach()


def _softmax(features: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(features @ weights + bias, dim=1)
