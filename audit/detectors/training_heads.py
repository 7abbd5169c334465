"""The torch half of training_dynamics: heads trained on the embeddings, one per seed, with
their margins and EL2N per epoch (see training_dynamics for what they measure).

Its own module so that reading the detector registry never loads torch: training_dynamics
imports it only when it scores.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from audit.detectors.base import Progress
from audit.processes import torch_threads

if TYPE_CHECKING:
    from audit.detectors.training_dynamics import HeadConfig

EVAL_CHUNK = 4096   # rows evaluated at once, small enough to stay in cache: a pass over
                    # 1M x 512 took 0.3-0.5 s in chunks of 2,048-8,192, 1.5 s of 65,536
MAX_BATCH = 4096
STANDARDISE_ROWS = 65_536


def fit_heads(embeddings: np.ndarray, targets: np.ndarray, outputs: int, config: HeadConfig,
              seeds: list[int], progress: Progress | None = None,
              trained: np.ndarray | None = None, executor=None) -> tuple[np.ndarray, np.ndarray]:
    """Train one head per seed (targets: (n, heads)) on the standardised embeddings of the rows
    ``trained`` (default: all); return AUM and early EL2N of every row, each (n, heads). The
    standardisation is folded into the heads' first layer (``StackedHeads``), so no
    standardised copy of the embeddings is made (2 GB at 1M x 512) and no batch is
    standardised.

    In this process (``executor`` None or local) every head trains in one stacked model. An
    executor with several slots (Ray) gets the seeds cut into groups, one ``train_head_group``
    task each; every group takes its batches in the first seed's order, as the stacked model
    does, so each head trains as it would in this process."""
    features = np.ascontiguousarray(embeddings, dtype=np.float32)
    mean, scale = column_standardisation(features)
    slots = 1 if executor is None else executor.slots()
    groups = np.array_split(np.arange(len(seeds)), min(len(seeds), slots))
    shared = {"features": features, "mean": mean, "scale": scale, "targets": targets,
              "outputs": outputs, "config": config, "seeds": seeds, "trained": trained}
    if len(groups) == 1:
        return train_head_group(groups[0], **shared, progress=progress)
    found = executor.map(train_head_group, [(group,) for group in groups], shared, progress,
                         what="training_dynamics heads")
    return tuple(np.concatenate([part[i] for part in found], axis=1) for i in (0, 1))


def train_head_group(columns: np.ndarray, *, features: np.ndarray, mean: np.ndarray,
                     scale: np.ndarray, targets: np.ndarray, outputs: int, config: HeadConfig,
                     seeds: list[int], trained: np.ndarray | None,
                     progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The heads of ``seeds[columns]`` (targets ``targets[:, columns]``) stacked in one model on
    ``(features - mean) / scale``, batches in ``seeds[0]``'s order; one torch thread unless the
    batches are large. Returns (AUM, early EL2N), each (n, len(columns))."""
    rows = len(features) if trained is None else len(trained)
    with warnings.catch_warnings():   # Ray shares the arrays read-only; they are only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(features)
        trained_rows = None if trained is None else torch.from_numpy(trained)
    standardisation = (torch.from_numpy(mean), torch.from_numpy(scale))
    with torch_threads(head_threads(batch_size(rows, config.steps_per_epoch))):
        return train_heads(x, standardisation,
                           torch.from_numpy(np.ascontiguousarray(targets[:, columns])),
                           outputs, config, [seeds[c] for c in columns], progress,
                           trained_rows, order_seed=seeds[0])


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Assigned logit minus the largest other logit, per row."""
    assigned = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return assigned - others.max(dim=1).values


def el2n(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L2 norm of softmax minus the one-hot target, per row (0 .. sqrt(2))."""
    error = torch.softmax(logits, dim=1)
    error[torch.arange(len(targets)), targets] -= 1.0
    return error.norm(dim=1)


def _head(dim: int, outputs: int, hidden: int) -> torch.nn.Module:
    if hidden <= 0:
        return torch.nn.Linear(dim, outputs)
    return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, outputs))


class StackedHeads(torch.nn.Module):
    """One head per seed, evaluated together on standardised rows: (batch, dim) raw rows ->
    (batch, heads, outputs).

    Each head starts as ``_head`` would with its own seed. The loss is the sum of the heads'
    own mean losses and Adam (with its weight decay) acts elementwise, so every head trains
    exactly as it would alone on the same batches; one batched product replaces ``heads``
    separate trainings (3x faster at 100k examples).

    The rows' standardisation ``(x - mean) / scale`` is folded into the first layer, which
    computes ``x @ (W / scale).T + (b - (W / scale) @ mean)``: the same function of the same
    parameters, as one product of the raw rows with all heads' weights (an epoch at 1M:
    2.4 s -> 1.3 s, against standardising each batch and an einsum)."""

    def __init__(self, dim: int, outputs: int, hidden: int, seeds: list[int],
                 mean: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        layers = [[m for m in _seeded_head(dim, outputs, hidden, s).modules()
                   if isinstance(m, torch.nn.Linear)] for s in seeds]
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.stack([head[i].weight.detach() for head in layers]))
            for i in range(len(layers[0])))
        self.biases = torch.nn.ParameterList(
            torch.nn.Parameter(torch.stack([head[i].bias.detach() for head in layers]))
            for i in range(len(layers[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads, width, dim = self.weights[0].shape
        first = (self.weights[0] / self.scale).reshape(heads * width, dim)
        out = torch.nn.functional.linear(x, first, self.biases[0].reshape(-1) - first @ self.mean)
        out = out.view(len(x), heads, width)
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            out = torch.einsum("brh,roh->bro", torch.relu(out), weight) + bias
        return out


def _seeded_head(dim: int, outputs: int, hidden: int, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _head(dim, outputs, hidden)


def _all_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


def batch_size(n: int, steps_per_epoch: int) -> int:
    return int(np.clip(n // steps_per_epoch, 32, MAX_BATCH))


def heads_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over heads of each head's mean cross-entropy; logits (b, heads, c), targets (b, heads).
    The log-softmax is taken by ``logsumexp``: forward and backward 1.9x faster than
    ``cross_entropy`` on these small shapes (0.62 against 1.18 ms for 4,096 x 3 x 11)."""
    log_probs = logits - torch.logsumexp(logits, dim=2, keepdim=True)
    return -log_probs.gather(2, targets[:, :, None]).mean(dim=0).sum()


def _train_epoch(model, optimizer, x: torch.Tensor, targets: torch.Tensor,
                 trained: torch.Tensor | None, batch_size: int, generator,
                 seen: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
    """One pass over the rows ``trained`` (default: all) in a random order; ``seen(rows,
    logits)`` gets each batch's logits from the forward pass that trains on it."""
    count = len(x) if trained is None else len(trained)
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        batch = order[start:start + batch_size]
        rows = batch if trained is None else trained[batch]
        logits = model(x.index_select(0, rows))     # 2.8x faster than x[rows]
        loss = heads_loss(logits, targets.index_select(0, rows))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen(rows, logits.detach())


def _per_head(measure, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    flat = measure(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return flat.view(targets.shape)


def train_heads(x: torch.Tensor, standardisation: tuple[torch.Tensor, torch.Tensor],
                targets: torch.Tensor, outputs: int, config: HeadConfig, seeds: list[int],
                progress: Progress | None = None, trained: torch.Tensor | None = None,
                order_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train one head per seed (targets: (n, heads)) on the rows ``trained`` (default: all) of
    ``x`` standardised by ``standardisation`` (mean, scale), batches in the order drawn from
    ``order_seed`` (default: the first seed); return AUM and early EL2N of every row,
    (n, heads).

    As in the AUM paper's own code, a trained row's margin in an epoch (and its EL2N in the
    early epoch) is read from the logits of the forward pass that trains on it, so an epoch
    costs no second pass over the data (at 1M rows, 0.5 s of an epoch's 1.8 s). Rows never
    trained on (removed by a reviewer) are measured after each epoch."""
    model = StackedHeads(x.shape[1], outputs, config.hidden, seeds, *standardisation)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seeds[0] if order_seed is None else order_seed)
    margin_sum, early = torch.zeros(targets.shape), torch.zeros(targets.shape)
    size = batch_size(len(x) if trained is None else len(trained), config.steps_per_epoch)
    untrained = None if trained is None else _rows_not_in(trained, len(x))
    for epoch in range(1, config.epochs + 1):
        record = functools.partial(_record, margin_sum,
                                   early if epoch == config.early_epoch else None, targets)
        _train_epoch(model, optimizer, x, targets, trained, size, generator, record)
        if untrained is not None and len(untrained):
            record(untrained, _all_logits(model, x[untrained]))
        if progress:
            progress(epoch / config.epochs, f"epoch {epoch} of {config.epochs}")
    return (margin_sum / config.epochs).numpy(), early.numpy()


def _record(margin_sum: torch.Tensor, early: torch.Tensor | None, targets: torch.Tensor,
            rows: torch.Tensor, logits: torch.Tensor) -> None:
    """Add the ``rows``' margins under ``logits`` to ``margin_sum``; in the early epoch
    (``early`` given) also write their EL2N to it."""
    assigned = targets.index_select(0, rows)
    margin_sum.index_add_(0, rows, _per_head(margins, logits, assigned))
    if early is not None:
        early[rows] = _per_head(el2n, logits, assigned)


def _rows_not_in(rows: torch.Tensor, count: int) -> torch.Tensor:
    keep = torch.ones(count, dtype=torch.bool)
    keep[rows] = False
    return torch.nonzero(keep).squeeze(1)


def head_threads(batch_rows: int) -> int | None:
    """torch threads for training heads on batches of ``batch_rows``: small heads train faster
    on one thread, more threads only contend (10x slower measured on 2 busy cores). Batches of
    MAX_BATCH rows (from about 205,000 rows) keep torch's threads (None): an epoch at 1M took
    2.1 s on 2 threads against 3.9 s on one (measured before the standardisation was folded
    into the first layer)."""
    return None if batch_rows >= MAX_BATCH else 1


def column_standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (+ 1e-6), float32: rows become
    ``(row - mean) / scale``, mean 0 and standard deviation 1 per column. Sums in float64, the
    squared deviations a block of rows at a time (torch's ``std`` over the rows took 4x as long
    at 1M x 512)."""
    rows = len(features)
    mean = features.mean(axis=0, dtype=np.float64)
    squares = np.zeros(features.shape[1])
    for start in range(0, rows, STANDARDISE_ROWS):
        block = features[start:start + STANDARDISE_ROWS] - mean
        squares += np.einsum("ij,ij->j", block, block)
    variance = squares / max(rows - 1, 1)
    return mean.astype(np.float32), (np.sqrt(variance) + 1e-6).astype(np.float32)
