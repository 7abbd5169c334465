"""The MLP probe's minimum steps on small datasets: held-out AUROC and time per cross-fit.

Random CIFAR-10N subsets (``--reps`` per size, seeds 100, 101, ...) with the imagenet embedder's
vectors; for each, the probe cross-fitted with the default folds and seed at every minimum step
count of ``--steps`` (``audit.probe.MLP_MIN_STEPS`` set for the call) and, with ``--logistic``,
the logistic probe. AUROC is of the held-out probability of the given label against the truth
(given label != clean label); the paired difference is each setting minus the first one.

    python -m bench.bench_probe_steps --column aggre_label --sizes 200,500,1000,2000 \\
        --steps 400,200,100,0 --logistic --cache bench/out/cache
    python -m bench.bench_probe_steps --column worse_label --sizes 500,2000 --steps 400,200

``--cache`` holds (or receives) ``cifar10n_imagenet.npy``, as bench_quality's ``--cache``.
Needs the benchmark data set at ``bench_quality.CIFAR_PATH``.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import pandas as pd

from audit import probe
from bench import markdown_table
from bench.bench_engine_speed import machine
from bench.bench_quality import CIFAR_CLASSES, CIFAR_PATH, cifar_embeddings, score_auroc


def probe_auroc(vectors: np.ndarray, labels: np.ndarray, truth: np.ndarray, kind: str,
                min_steps: int) -> tuple[float, float]:
    """(AUROC, seconds) of one cross-fit with ``min_steps`` as the MLP's minimum."""
    default, probe.MLP_MIN_STEPS = probe.MLP_MIN_STEPS, min_steps
    try:
        started = time.perf_counter()
        probs = probe.cross_fit_probe(vectors, labels, len(CIFAR_CLASSES), kind=kind).pred_probs
        seconds = time.perf_counter() - started
    finally:
        probe.MLP_MIN_STEPS = default
    return score_auroc(probs[np.arange(len(labels)), labels], truth), seconds


def size_rows(data: dict, vectors: np.ndarray, column: str, size: int, reps: int,
              settings: list[tuple[str, int]]) -> list[dict]:
    """One row per setting: mean AUROC and time over ``reps`` subsets, paired difference."""
    aurocs = {setting: [] for setting in settings}
    seconds = {setting: 0.0 for setting in settings}
    for rep in range(reps):
        rows = np.random.default_rng(100 + rep).choice(len(vectors), size, replace=False)
        labels = data[column][rows].astype(np.int64)
        truth = labels != data["clean_label"][rows]
        for setting in settings:
            auroc, spent = probe_auroc(vectors[rows], labels, truth, *setting)
            aurocs[setting].append(auroc)
            seconds[setting] += spent
    first = np.array(aurocs[settings[0]])
    lines = []
    for kind, steps in settings:
        difference = np.array(aurocs[(kind, steps)]) - first
        spread = difference.std(ddof=1) / np.sqrt(reps) if reps > 1 else 0.0
        lines.append({"labels": column, "images": size,
                      "probe": kind if kind == "logistic" else f"mlp, {steps} min steps",
                      "auroc": round(float(np.mean(aurocs[(kind, steps)])), 4),
                      "paired difference": f"{difference.mean():+.4f} +- {spread:.4f}",
                      "higher": f"{int((difference > 0).sum())} of {reps}",
                      "s per cross-fit": f"{seconds[(kind, steps)] / reps:.1f}"})
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--column", default="aggre_label")
    parser.add_argument("--sizes", default="200,500,1000,2000")
    parser.add_argument("--steps", default="400,200")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--logistic", action="store_true", help="add the logistic probe")
    parser.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    args = parser.parse_args(argv)
    if not CIFAR_PATH.exists():
        parser.error(f"{CIFAR_PATH} is absent: this benchmark needs the CIFAR-10N data set")
    data = dict(np.load(CIFAR_PATH))
    vectors = cifar_embeddings(data, args.column, "imagenet", args.cache)
    settings = [("mlp", int(steps)) for steps in args.steps.split(",")]
    settings += [("logistic", 0)] if args.logistic else []
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}  {machine()}; {args.reps} subsets per size")
    lines = []
    for size in (int(s) for s in args.sizes.split(",")):
        lines += size_rows(data, vectors, args.column, size, args.reps, settings)
        print(markdown_table(pd.DataFrame(lines[-len(settings):]), digits=4), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
