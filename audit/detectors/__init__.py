"""The detectors: importing this package registers every detector in ``REGISTRY``.

Each module holds one small registered class and the pure functions it is built on.
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
from audit.detectors.base import REGISTRY, Detector, DetectorInputs, KnnGraph

__all__ = ["REGISTRY", "Detector", "DetectorInputs", "KnnGraph"]
