"""How ``auto`` settles between a pretrained embedder and raw pixels on the dataset at hand.

A pretrained network is the better default on natural images, but it can see small synthetic
images less well than their own pixels. Measured (docs/benchmarks.md, "Detection quality"):
on CIFAR-10N the neighbours of an ``imagenet`` vector carry its given label 71% of the time
against 38% for ``pixels``; on the demo's 32 px digits it is 87% against 92%.

Pixels cost next to nothing (about 2,000 images/s), so ``auto`` embeds both and keeps the
pixels only when they explain the given labels clearly better: on up to ``SAMPLE`` rows, each
row's ``NEIGHBOURS`` nearest neighbours vote for a label, and the pixels win when their share of
rows whose vote matches the given label is higher by more than ``MIN_Z`` standard errors of
the paired difference. The labels are noisy, but the noise is the same for both embeddings,
so the comparison is fair; ties and small gaps keep the pretrained network.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SAMPLE = 20_000
NEIGHBOURS = 10
MIN_Z = 2.0


@dataclasses.dataclass(frozen=True)
class LabelAgreement:
    """Share of sampled rows whose neighbours' vote matches their given label, per embedding."""

    pretrained: float
    pixels: float
    z: float
    rows: int

    @property
    def prefers_pixels(self) -> bool:
        return self.z > MIN_Z

    def as_dict(self, pretrained_name: str) -> dict:
        return {pretrained_name: round(self.pretrained, 4), "pixels": round(self.pixels, 4),
                "z": round(self.z, 2), "rows": self.rows}


def compare_label_agreement(pretrained: np.ndarray, pixels: np.ndarray, labels: np.ndarray,
                            seed: int = 0) -> LabelAgreement:
    """Paired comparison of the two embeddings of the same rows (same order)."""
    rows = _sample_rows(len(labels), seed)
    labels = np.asarray(labels)[rows]
    first = neighbour_vote_matches(pretrained[rows], labels)
    second = neighbour_vote_matches(pixels[rows], labels)
    difference = second.astype(np.float64) - first.astype(np.float64)
    spread = difference.std(ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else 0.0
    z = float(difference.mean() / spread) if spread > 0 else 0.0
    return LabelAgreement(float(first.mean()), float(second.mean()), z, len(rows))


def neighbour_vote_matches(vectors: np.ndarray, labels: np.ndarray,
                           k: int = NEIGHBOURS) -> np.ndarray:
    """Per row: does the majority label of its k nearest neighbours (cosine) equal its own?"""
    from audit.knn import build_knn_graph

    graph = build_knn_graph(vectors, k)
    classes = int(labels.max()) + 1
    votes = np.zeros((len(labels), classes))
    np.add.at(votes, (np.repeat(np.arange(len(labels)), graph.indices.shape[1]),
                      labels[graph.indices].ravel()), 1.0)
    return votes.argmax(axis=1) == labels


def _sample_rows(n: int, seed: int) -> np.ndarray:
    if n <= SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, SAMPLE, replace=False))
