"""The detectors: importing this package imports each detector module, which registers its
class in ``REGISTRY``. Adding a detector is adding its module and its test.

Each module holds one small registered class and the pure functions it is built on
(``training_heads`` is the torch half of training_dynamics). Importing the package loads no
model library: a detector's functions import torch or cleanlab when they run, so the registry,
config validation and the dashboard stay light.
"""

import importlib
import pkgutil

from audit.detectors.base import FAMILIES, REGISTRY, Detector, DetectorInputs, KnnGraph

NOT_DETECTORS = {"base", "training_heads"}   # the shared classes; the torch half of one detector


def _register_every_detector_module() -> None:
    """Import every module of this package but ``NOT_DETECTORS``: adding a detector is adding
    its module (and its test), nothing else."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in NOT_DETECTORS:
            importlib.import_module(f"{__name__}.{module.name}")


_register_every_detector_module()


def catalogue() -> list[dict]:
    """Every registered detector's facts (``Detector.facts``), by name."""
    return [REGISTRY[name].facts() for name in sorted(REGISTRY)]


__all__ = ["FAMILIES", "REGISTRY", "Detector", "DetectorInputs", "KnnGraph", "catalogue"]
