"""Out-of-sample predicted probabilities: a K-fold cross-fitted probe on the embeddings.

Folds are stratified by label and seeded. For each fold a probe is trained on the other folds
and predicts the held-out fold, so no sample's probabilities come from a model that saw its
label. Each fold's probe trains on at most ``MAX_TRAIN_ROWS`` rows (a seeded sample that keeps
every class), so past that size a run uses the fewest folds that still fill it: more folds
would add fits, not training rows. The embeddings are centred (the dataset mean removed, no
label used), projected on their top ``MAX_INPUT_DIMS`` principal directions when wider (fitted
on a sample of all rows, no label used either) and L2-normalised first. Two probes, both in
torch so the same code runs on a GPU:

- ``mlp`` (the default): one hidden layer (512 ReLU units, dropout 0.2 on the input and 0.5 on
  the hidden layer), AdamW, label smoothing 0.1, stopped early after ``MLP_EPOCHS`` epochs (at
  least ``MLP_MIN_STEPS`` steps) before it memorises the noisy labels, averaged over
  ``MLP_BAGS`` seeds. Chosen on CIFAR-10N ``aggre_label`` (docs/benchmarks.md): against the
  logistic probe on the same imagenet features, AUROC of the given label's probability 0.926
  vs 0.919.
- ``logistic``: multinomial logistic regression, L2-regularised as sklearn's (C), full-batch
  L-BFGS; faster, a little weaker.

Small classes are handled, not crashed on: folds are reduced to the sample count, and classes
with fewer members than folds are named in the notes (their held-out members may meet a model
that never saw their class, which is the honest answer for a singleton).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from audit.errors import InputError
from audit.principal import PrincipalAxes, principal_axes
from audit.processes import torch_threads

if TYPE_CHECKING:   # torch loads when a probe is fitted, not when PROBES is read (validation)
    import torch

PROBES = ("mlp", "logistic")
INVERSE_REGULARISATION = 1.0    # logistic: sklearn's C, the penalty is |W|^2 / (2 C n)
LBFGS_STEPS = 20
MLP_HIDDEN, MLP_EPOCHS, MLP_MIN_STEPS, MLP_BAGS, MLP_BATCH = 512, 8, 200, 3, 128
# MLP_MIN_STEPS binds below 3,200 training rows (25 batches x 8 epochs). 200 rather than 400:
# on CIFAR-10N subsets of 200-2,000 images the held-out AUROC was as good or better and the
# probe half as long (docs/benchmarks.md, "The MLP probe's minimum steps")
MAX_INPUT_DIMS = 512            # wider embeddings (imagenet's 1,904) reach the probe on their
                                # top 512 principal directions: on CIFAR-10N the same AUROC or
                                # better, the MLP cross-fit 48 -> 30 s on 10,000 images, the
                                # logistic one about as long as before (docs/benchmarks.md,
                                # "The probe's input on 512 principal directions")
MAX_TRAIN_ROWS = 25_000         # per fold: ~5 rows per weight of a 512-d, 10-class probe
PREDICT_ROWS = 4096             # held rows centred and predicted at once, few enough to stay in
                                # cache: 500,000 rows took 4.2 s in chunks of 4,096, 6-6.7 s in
                                # chunks of 65,536


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
                    seed: int = 0, device: str = "cpu", kind: str = "mlp",
                    trainable: np.ndarray | None = None, executor=None,
                    axes: PrincipalAxes | None = None) -> ProbeResult:
    """Held-out probabilities of the ``kind`` probe for every sample; a sample where
    ``trainable`` is False (a reviewer removed it) is predicted but never trained on. Each fold
    is one call of ``fold_probabilities``, mapped by ``executor`` (``audit.executors``; this
    process when None). ``axes`` are the embeddings' principal axes when the caller has them
    (the run fits them once for the probe and the outlier detector); fitted here when None."""
    from audit.executors import LocalExecutor

    labels = np.array(labels, dtype=np.int64)
    trainable = np.ones(len(labels), dtype=bool) if trainable is None else trainable
    if len(np.unique(labels[trainable])) < 2:
        raise InputError("out-of-sample probabilities need at least two classes; the samples "
                         "the probe may train on have one, so label checks cannot run (add the "
                         "other classes)")
    if kind not in PROBES:
        raise InputError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")
    folds, notes = fewest_sampled_folds(int(trainable.sum()), folds)
    fold_of, n_folds, fold_notes = stratified_folds(labels, folds, seed)
    notes += fold_notes
    rng = np.random.default_rng(seed)
    splits = [(training_rows(np.flatnonzero((fold_of != fold) & trainable), labels, rng),
               np.flatnonzero(fold_of == fold)) for fold in range(n_folds)]
    executor = executor or LocalExecutor()
    if axes is None:
        axes = principal_axes(embeddings)                                 # uses no label
    directions = axes.top(MAX_INPUT_DIMS) if embeddings.shape[1] > MAX_INPUT_DIMS else None
    held_probs = executor.map(
        fold_probabilities, splits,
        {"features": embeddings, "mean": axes.mean, "directions": directions, "labels": labels,
         "n_classes": n_classes, "seed": seed, "device": device, "kind": kind},
        what="probe folds", gpus=int(device == "cuda"))
    probs = np.zeros((len(labels), n_classes), dtype=np.float32)
    for (_, held), fold_probs in zip(splits, held_probs):
        probs[held] = fold_probs
    if len(labels) * (n_folds - 1) / n_folds > MAX_TRAIN_ROWS:
        notes.append(f"each fold's probe trained on a seeded random sample of {MAX_TRAIN_ROWS:,} "
                     "rows (every class kept)")
    return ProbeResult(probs, fold_of, n_folds, notes)


def fold_probabilities(train: np.ndarray, held: np.ndarray, *, features: np.ndarray,
                       mean: np.ndarray, directions: np.ndarray | None, labels: np.ndarray,
                       n_classes: int, seed: int, device: str, kind: str) -> np.ndarray:
    """One fold: the ``kind`` probe trained on the ``train`` rows, its probabilities for the
    ``held`` rows (float32). Rows are prepared as they are read (``probe_input``), and held
    rows predicted ``PREDICT_ROWS`` at a time, so that no centred or held-out copy of the
    embeddings is made (2 GB and 1 GB at 1M x 512 with 2 folds)."""
    import torch

    fit = fit_mlp_bag if kind == "mlp" else fit_logistic_model
    predict = fit(torch.as_tensor(probe_input(features[train], mean, directions), device=device),
                  torch.as_tensor(labels[train], device=device), n_classes, seed)
    probs = np.empty((len(held), n_classes), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(held), PREDICT_ROWS):
            rows = probe_input(features[held[start:start + PREDICT_ROWS]], mean, directions)
            probs[start:start + PREDICT_ROWS] = predict(
                torch.as_tensor(rows, device=device)).cpu().numpy()
    return probs


def fewest_sampled_folds(trainable: int, folds: int) -> tuple[int, list[str]]:
    """The fewest folds (at least 2, at most ``folds``) whose probes each still train on
    MAX_TRAIN_ROWS rows. Past that size more folds add fits, not training rows: at 1M samples
    5 folds train 15 MLPs on 25,000-row samples, 2 folds 6 MLPs on samples of the same size."""
    fewest = next((f for f in range(2, folds) if trainable * (f - 1) / f >= MAX_TRAIN_ROWS), folds)
    if fewest == folds:
        return folds, []
    return fewest, [f"folds reduced from {folds} to {fewest}: each fold's probe trains on a "
                    f"sample of {MAX_TRAIN_ROWS:,} rows either way"]


def training_rows(candidates: np.ndarray, labels: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """All candidate rows, or a seeded sample of MAX_TRAIN_ROWS that keeps every class."""
    if len(candidates) <= MAX_TRAIN_ROWS:
        return candidates
    order = rng.permutation(candidates)
    first_of_class = order[np.unique(labels[order], return_index=True)[1]]
    rest = order[~np.isin(order, first_of_class)][:MAX_TRAIN_ROWS - len(first_of_class)]
    return np.sort(np.concatenate([first_of_class, rest]))


def probe_input(rows: np.ndarray, mean: np.ndarray, directions: np.ndarray | None) -> np.ndarray:
    """``rows`` minus the dataset ``mean``, on the principal ``directions`` when given,
    L2-normalised (a new float32 array)."""
    vectors = np.asarray(rows, dtype=np.float32) - mean
    if directions is not None:
        vectors = vectors @ directions
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def fit_logistic_model(train_x: torch.Tensor, train_y: torch.Tensor, n_classes: int,
                       seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fitted logistic probe, as a function from rows to probabilities."""
    weights, bias = fit_logistic(train_x, train_y, n_classes, seed)
    return lambda rows: _softmax(rows, weights, bias)


def fit_mlp_bag(train_x: torch.Tensor, train_y: torch.Tensor, n_classes: int,
                seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """MLP_BAGS small MLPs, each with its own seed, as a function from rows to their mean
    softmax. On the CPU the bags train side by side, one Python thread and one torch thread
    each (``parallel_bags``): a probe's 128-row steps gain nothing from a second torch thread
    (one fit on 25,000 rows: 3.7 s on one thread, 3.8 s on two). Each bag draws its initial
    weights (in this thread, in bag order), its batch order and its dropout from its own seed,
    so the result does not depend on the threads."""
    import torch

    starts = [initial_layers(train_x.shape[1], n_classes, seed + bag, train_x.device)
              for bag in range(MLP_BAGS)]
    workers = parallel_bags(train_x.device.type)
    if workers == 1:
        models = [fit_mlp(train_x, train_y, layers, seed + bag)
                  for bag, layers in enumerate(starts)]
    else:
        with torch_threads(1), ThreadPoolExecutor(workers) as pool:
            models = list(pool.map(lambda bag: fit_mlp(train_x, train_y, starts[bag], seed + bag),
                                   range(MLP_BAGS)))
    return lambda rows: sum(torch.softmax(model(rows), dim=1) for model in models) / MLP_BAGS


def parallel_bags(device_type: str) -> int:
    """How many bags train at once: all MLP_BAGS on a CPU where torch may use two threads or
    more, else one at a time (on a GPU; in a Ray task given one CPU). Three bags on two cores,
    25,000 rows: 6.5-7.2 s side by side, 7.8-8.8 s two at a time, 9.8-10.5 s one after
    another on two torch threads."""
    import torch

    return MLP_BAGS if device_type == "cpu" and torch.get_num_threads() >= 2 else 1


def initial_layers(dims: int, n_classes: int, seed: int,
                   device: torch.device) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The MLP's hidden and output layers, initialised from ``seed`` (torch's default
    initialisation, the global generator forked so no other draw is disturbed)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (torch.nn.Linear(dims, MLP_HIDDEN).to(device),
                torch.nn.Linear(MLP_HIDDEN, n_classes).to(device))


def fit_mlp(features: torch.Tensor, targets: torch.Tensor,
            layers: tuple[torch.nn.Linear, torch.nn.Linear], seed: int) -> torch.nn.Module:
    """One-hidden-layer MLP from its initial ``layers``, stopped early (see the module doc);
    batch order and dropout drawn from ``seed``'s own generator. Returned for prediction (the
    network without its dropout, which is what eval mode computes)."""
    import torch

    hidden, output = layers
    parameters = [*hidden.parameters(), *output.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-3, fused=True)
    generator = torch.Generator(device=features.device).manual_seed(seed)
    batches_per_epoch = -(-len(features) // MLP_BATCH)
    epochs = max(MLP_EPOCHS, -(-MLP_MIN_STEPS // batches_per_epoch))
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator, device=features.device)
        for batch in order.split(MLP_BATCH):
            inputs = dropout(features.index_select(0, batch), 0.2, generator)
            logits = output(dropout(torch.relu(hidden(inputs)), 0.5, generator))
            loss = torch.nn.functional.cross_entropy(logits, targets.index_select(0, batch),
                                                     label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return torch.nn.Sequential(hidden, torch.nn.ReLU(inplace=True), output).eval()


def dropout(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout, as ``torch.nn.functional.dropout`` in training, with the mask drawn
    from uniform numbers of ``generator``: on CPU torch's own draws Bernoulli numbers 3.7x
    slower (0.65 ms against 0.18 ms for a 128 x 512 batch), which made dropout 40% of the
    probe's time. The mask is made in place, already scaled, so autograd records one product
    (forward and backward 0.28 against 0.45 ms; the same numbers as ``x * keep * scale``)."""
    import torch

    scaled_keep = torch.rand(x.shape, generator=generator, device=x.device)
    return x * scaled_keep.ge_(rate).mul_(1.0 / (1.0 - rate))


def fit_logistic(features: torch.Tensor, targets: torch.Tensor, n_classes: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2-penalised as sklearn's (C), by full-batch L-BFGS.

    No feature scaling: embeddings are L2-normalised and the variance of a direction is part
    of its meaning (standardising would blow up noise directions)."""
    import torch

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
    import torch

    with torch.no_grad():
        return torch.softmax(features @ weights + bias, dim=1)
