"""The torch half of training_dynamics: heads trained on the embeddings, one per seed, with
their margins and EL2N per epoch (see training_dynamics for what they measure).

Its own module so that reading the detector registry never loads torch: training_dynamics
imports it only when it scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from audit.detectors.base import Progress

if TYPE_CHECKING:
    from audit.detectors.training_dynamics import HeadConfig

EVAL_CHUNK = 4096   # rows standardised and evaluated at once, small enough to stay in cache: a
                    # pass over 1M x 512 took 0.3-0.5 s in chunks of 2,048-8,192, 1.5 s of 65,536
MAX_BATCH = 4096


def fit_heads(embeddings: np.ndarray, targets: np.ndarray, outputs: int, config: HeadConfig,
              seeds: list[int], progress: Progress | None = None,
              trained: np.ndarray | None = None, executor=None) -> tuple[np.ndarray, np.ndarray]:
    """Train one head per seed (targets: (n, heads)) on the standardised embeddings of the rows
    ``trained`` (default: all); return AUM and early EL2N of every row, each (n, heads). Rows
    are standardised batch by batch, so no standardised copy of the embeddings is made (2 GB
    at 1M x 512).

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
        x = Standardised(torch.from_numpy(features), torch.from_numpy(mean),
                         torch.from_numpy(scale))
        trained_rows = None if trained is None else torch.from_numpy(trained)
    with torch_threads(batch_size(rows, config.steps_per_epoch)):
        return train_heads(x, torch.from_numpy(np.ascontiguousarray(targets[:, columns])),
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
    """One head per seed, evaluated together: (batch, dim) -> (batch, heads, outputs).

    Each head starts as ``_head`` would with its own seed. The loss is the sum of the heads'
    own mean losses and Adam (with its weight decay) acts elementwise, so every head trains
    exactly as it would alone on the same batches; one batched product replaces ``heads``
    separate trainings (3x faster at 100k examples)."""

    def __init__(self, dim: int, outputs: int, hidden: int, seeds: list[int]):
        super().__init__()
        layers = [[m for m in _seeded_head(dim, outputs, hidden, s).modules()
                   if isinstance(m, torch.nn.Linear)] for s in seeds]
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.stack([head[i].weight.detach() for head in layers]))
            for i in range(len(layers[0])))
        self.biases = torch.nn.ParameterList(
            torch.nn.Parameter(torch.stack([head[i].bias.detach() for head in layers]))
            for i in range(len(layers[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bd,rod->bro", x, self.weights[0]) + self.biases[0]
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            out = torch.einsum("brh,roh->bro", torch.relu(out), weight) + bias
        return out


def _seeded_head(dim: int, outputs: int, hidden: int, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _head(dim, outputs, hidden)


def _all_logits(model: torch.nn.Module, x: Standardised) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x.rows(slice(i, i + EVAL_CHUNK)))
                          for i in range(0, len(x), EVAL_CHUNK)])


def batch_size(n: int, steps_per_epoch: int) -> int:
    return int(np.clip(n // steps_per_epoch, 32, MAX_BATCH))


def heads_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over heads of each head's mean cross-entropy; logits (b, heads, c), targets (b, heads)."""
    per_example = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return per_example.view(targets.shape).mean(dim=0).sum()


def _train_epoch(model, optimizer, x: Standardised, targets: torch.Tensor,
                 trained: torch.Tensor | None, batch_size: int, generator) -> None:
    """One pass over the rows ``trained`` (default: all) in a random order."""
    count = len(x) if trained is None else len(trained)
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        batch = order[start:start + batch_size]
        rows = batch if trained is None else trained[batch]
        loss = heads_loss(model(x.rows(rows)), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _per_head(measure, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    flat = measure(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return flat.view(targets.shape)


def train_heads(x: Standardised, targets: torch.Tensor, outputs: int, config: HeadConfig,
                seeds: list[int], progress: Progress | None = None,
                trained: torch.Tensor | None = None,
                order_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train one head per seed (targets: (n, heads)) on the rows ``trained`` (default: all),
    batches in the order drawn from ``order_seed`` (default: the first seed); return AUM and
    early EL2N of every row, (n, heads)."""
    model = StackedHeads(x.raw.shape[1], outputs, config.hidden, seeds)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seeds[0] if order_seed is None else order_seed)
    margin_sum, early = torch.zeros(targets.shape), torch.zeros(targets.shape)
    size = batch_size(len(x) if trained is None else len(trained), config.steps_per_epoch)
    for epoch in range(1, config.epochs + 1):
        _train_epoch(model, optimizer, x, targets, trained, size, generator)
        logits = _all_logits(model, x)
        margin_sum += _per_head(margins, logits, targets)
        if epoch == config.early_epoch:
            early = _per_head(el2n, logits, targets)
        if progress:
            progress(epoch / config.epochs, f"epoch {epoch} of {config.epochs}")
    return (margin_sum / config.epochs).numpy(), early.numpy()


@contextlib.contextmanager
def torch_threads(batch_rows: int):
    """Small heads train faster on one thread: more threads only contend (10x slower measured
    on 2 busy cores). Batches of MAX_BATCH rows (from about 205,000 rows) keep torch's
    threads: an epoch at 1M took 2.1 s on 2 threads against 3.9 s on one. The previous setting
    is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(previous if batch_rows >= MAX_BATCH else 1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def column_standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (+ 1e-6), float32: rows become
    ``(row - mean) / scale``, mean 0 and standard deviation 1 per column."""
    x = torch.from_numpy(features)
    return x.mean(dim=0).numpy(), (x.std(dim=0) + 1e-6).numpy()


@dataclasses.dataclass
class Standardised:
    """Rows of ``raw`` standardised when read, so no standardised copy is held."""

    raw: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def __len__(self) -> int:
        return len(self.raw)

    def rows(self, index: torch.Tensor | slice) -> torch.Tensor:
        return (self.raw[index] - self.mean) / self.scale
