"""The detectors: importing this package registers every detector in ``REGISTRY``.

Each module holds one small registered class and the pure functions it is built on
(``training_heads`` is the torch half of training_dynamics). Importing the package loads no
model library: a detector's functions import torch or cleanlab when they run, so the registry,
config validation and the dashboard stay light.
"""

from audit.detectors import (  # noqa: F401  (imported for their @register side effect)
    image_quality,
    knn_label,
    label_issue,
    near_duplicate,
    outlier,
    overall,
    training_dynamics,
    vl_consistency,
)
from audit.detectors.base import FAMILIES, REGISTRY, Detector, DetectorInputs, KnnGraph


def catalogue() -> list[dict]:
    """Every registered detector's facts (``Detector.facts``), by name."""
    return [REGISTRY[name].facts() for name in sorted(REGISTRY)]


__all__ = ["FAMILIES", "REGISTRY", "Detector", "DetectorInputs", "KnnGraph", "catalogue"]
