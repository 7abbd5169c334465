"""A small dataset whose labels are the numbers 1..12 (the case where text order goes wrong),
and pred_probs built for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.audit.manifests import write_manifest

CLASSES = [str(number) for number in range(1, 13)]     # numeric order: "2" before "10"
PER_CLASS = 5
N_SAMPLES = len(CLASSES) * PER_CLASS                    # 60
PLANTED = {7: "11", 30: "2", 52: "10"}                  # row -> the class the model believes


def numeric_labels(n: int = N_SAMPLES) -> list[str]:
    """Row i is labelled class i % 12 + 1, so the classes are interleaved, not grouped."""
    return [CLASSES[i % len(CLASSES)] for i in range(n)]


def write_numeric_dataset(folder: Path, broken: int = 0) -> Path:
    """Tiny PNGs with labels "1".."12" and a manifest; ``broken`` truncated files at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, label in enumerate(numeric_labels()):
        shade = 20 * int(label)
        Image.new("RGB", (8, 8), (shade, 255 - shade, (7 * i) % 256)).save(folder / f"s{i:03d}.png")
        rows.append({"id": f"s{i:03d}", "path": f"s{i:03d}.png", "label": label})
    return write_manifest(folder, rows, broken, broken_label="1")


def confident_probs(believed: list[str], columns: list[str], top: float = 0.89) -> np.ndarray:
    """One row per sample: ``top`` on the believed class's column, the rest spread evenly."""
    probs = np.full((len(believed), len(columns)), (1 - top) / (len(columns) - 1))
    probs[np.arange(len(believed)), [columns.index(name) for name in believed]] = top
    return probs


def believed_with_planted(labels: list[str]) -> list[str]:
    """The given labels, except the PLANTED rows where the model believes another class."""
    return [PLANTED.get(i, label) for i, label in enumerate(labels)]
