"""training_dynamics: EL2N and AUM from a small head trained on the embeddings.

A linear head (or a one-hidden-layer MLP when ``hidden`` > 0) is trained with torch on the
standardised embeddings of ALL examples (in-sample, NOT cross-fitted: training dynamics are a
property of fitting the given labels, as in the papers). It is trained ``seeds`` times (at least
2); in run ``r`` a disjoint random set of n / (K + 1) examples is relabelled to a fake extra
class ("threshold samples", Pleiss et al. 2020).

- AUM (area under the margin): mean over epochs of ``logit[given] - max other logit``. The AUM
  threshold is the ``threshold_percentile`` of the threshold samples' AUM (they are mislabelled
  by construction); each example's AUM is averaged over the runs where it was not a threshold
  sample. ``is_issue = AUM < threshold``. The default percentile is 50, not the paper's 99: with
  a linear head on embeddings the 99th percentile flagged 3-6x too many examples (F1 0.33 vs
  0.91 on the demo; tuned on the demo and CIFAR-10N aggre_label, see docs/benchmarks.md).
- EL2N (Paul et al. 2021): ``|| softmax(logits) - onehot(given) ||_2`` at epoch ``early_epoch``,
  averaged over the same runs.

Score = mean of ``aum_score = sigmoid((AUM - threshold) / s)`` (``s`` a robust spread of AUM,
so the threshold maps to 0.5) and ``el2n_score = 1 - EL2N / sqrt(2)``; both lie in [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from audit.detectors.base import (Detector, DetectorInputs, Progress, register, result_frame,
                                  rounded)
from audit.errors import ConfigError

MIN_RUNS = 2        # threshold samples take turns, so every example is scored in some run


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    epochs: int = 15
    early_epoch: int = 2
    hidden: int = 0
    lr: float = 1e-2
    weight_decay: float = 1e-4
    steps_per_epoch: int = 50       # the batch size follows from it (32 .. 4096)


@dataclasses.dataclass
class Dynamics:
    aum: np.ndarray            # (n,) mean over non-threshold runs
    el2n: np.ndarray           # (n,)
    aum_threshold: float


def threshold_groups(n: int, n_classes: int, runs: int, seed: int) -> list[np.ndarray]:
    """Disjoint random sets of threshold samples, n // (K + 1) each, one per run."""
    size = max(n // (n_classes + 1), 1)
    order = np.random.default_rng(seed).permutation(n)
    return [order[np.arange(r * size, (r + 1) * size) % n] for r in range(runs)]


def training_dynamics(embeddings: np.ndarray, labels: np.ndarray, n_classes: int, runs: int,
                      config: HeadConfig, percentile: float, seed: int,
                      progress: Progress | None = None,
                      trainable: np.ndarray | None = None, executor=None) -> Dynamics:
    """AUM and EL2N averaged over ``runs`` heads, each with its own threshold samples. Rows
    where ``trainable`` is False (removed by a reviewer) are never trained on nor threshold
    samples; their margins are measured on the trained heads. ``executor`` (the run's) may
    train groups of heads as tasks (``training_heads.fit_heads``)."""
    from audit.detectors.training_heads import fit_heads   # torch: loaded only to train

    n = len(labels)
    trained = None if trainable is None or trainable.all() else np.flatnonzero(trainable)
    candidates = np.arange(n) if trained is None else trained
    groups = [candidates[g] for g in threshold_groups(len(candidates), n_classes, runs, seed)]
    targets = np.repeat(labels.astype(np.int64)[:, None], runs, axis=1)
    for run, fake in enumerate(groups):
        targets[fake, run] = n_classes
    aum, early = fit_heads(embeddings, targets, n_classes + 1, config,
                           [seed + run for run in range(runs)], progress, trained, executor)
    real = np.ones((n, runs), dtype=bool)
    for run, fake in enumerate(groups):
        real[fake, run] = False
    thresholds = [np.percentile(aum[fake, run], percentile) for run, fake in enumerate(groups)]
    counts = real.sum(axis=1)
    return Dynamics((aum * real).sum(axis=1) / counts, (early * real).sum(axis=1) / counts,
                    float(np.mean(thresholds)))


def dynamics_scores(dynamics: Dynamics) -> tuple[np.ndarray, np.ndarray]:
    """(aum_score, el2n_score), each in [0, 1]; the AUM threshold maps to 0.5."""
    aum = dynamics.aum
    spread = max(1.4826 * float(np.median(np.abs(aum - np.median(aum)))), 1e-6)
    aum_score = 1.0 / (1.0 + np.exp(-(aum - dynamics.aum_threshold) / spread))
    el2n_score = np.clip(1.0 - dynamics.el2n / np.sqrt(2.0), 0.0, 1.0)
    return aum_score, el2n_score


def dynamics_details(dynamics: Dynamics, is_issue: np.ndarray) -> list[dict]:
    threshold = float(dynamics.aum_threshold)
    threshold_shown = round(threshold, 4)
    return [{"reason": _reason(aum, err, threshold, issue), "aum": aum_shown,
             "el2n": err_shown, "aum_threshold": threshold_shown}
            for aum, err, aum_shown, err_shown, issue in zip(
                np.asarray(dynamics.aum, dtype=float).tolist(),
                np.asarray(dynamics.el2n, dtype=float).tolist(), rounded(dynamics.aum).tolist(),
                rounded(dynamics.el2n).tolist(), np.asarray(is_issue, dtype=bool).tolist())]


def _reason(aum: float, err: float, threshold: float, issue: bool) -> str:
    side = "below" if issue else "above"
    return (f"a small model fitting the given labels kept a margin of {aum:.2f} on it, {side} "
            f"the {threshold:.2f} of deliberately mislabelled examples (early error {err:.2f})")


@register
class TrainingDynamics(Detector):
    name = "training_dynamics"
    family = "label"
    requires = frozenset({"labels", "embeddings"})
    belief = "in_sample"
    params = {"seeds": 3, "epochs": 15, "early_epoch": 2, "hidden": 0, "lr": 1e-2,
              "threshold_percentile": 50.0}
    description = ("Training dynamics of a small head on the embeddings (in-sample, not "
                   "cross-fitted): area under the margin with threshold samples, and EL2N.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        if not 1 <= params["early_epoch"] <= params["epochs"]:
            raise ConfigError(f"training_dynamics: early_epoch={params['early_epoch']} must be "
                              f"between 1 and epochs={params['epochs']}; fix the detector params")
        config = HeadConfig(epochs=params["epochs"], early_epoch=params["early_epoch"],
                            hidden=params["hidden"], lr=params["lr"])
        runs = max(params["seeds"], MIN_RUNS)
        dynamics = training_dynamics(inputs.embeddings, inputs.labels, len(inputs.class_names),
                                     runs, config, params["threshold_percentile"], inputs.seed,
                                     progress, inputs.trainable, inputs.executor)
        aum_score, el2n_score = dynamics_scores(dynamics)
        is_issue = dynamics.aum < dynamics.aum_threshold
        score = (aum_score + el2n_score) / 2.0
        return result_frame(inputs, score, is_issue, dynamics_details(dynamics, is_issue))
