"""The detector contract.

A detector is one small class in its own module, registered with ``@register``. It declares
its ``name``, what it ``requires`` from ``DetectorInputs`` and its default ``params``, and
``score(inputs, params, progress)`` returns one row per usable sample:

    sample_id  str
    score      float in [0, 1], LOWER = MORE LIKELY A PROBLEM (cleanlab's convention)
    is_issue   bool
    details    dict or None (sub-scores, suggested label, duplicate-of id, neighbours ...)

The maths lives in pure functions beside the class, testable on tiny arrays. The plan never
special-cases a detector by name: a detector whose requirement is missing is skipped with
the reason ``missing_requirements`` gives, and one that raises is recorded as skipped too.
Detectors that combine others' results list them in ``after`` and read
``inputs.prior_scores[name]``; of those results' details they see only the keys they name in
``reads_details`` (the plan keeps no more of them in memory). A detector may set ``self.summary`` (a small JSON dict) while
scoring: what it measured about the whole dataset (overall: the estimated number of label
errors); the plan stores it with the run.

Two facts say what a detector judges, for code that must treat kinds of detectors apart
without naming them: ``family`` (one of ``FAMILIES``) and ``suggests_labels`` (its details may
propose another label). ``facts()`` gives every declared fact as plain data; the Datasets page
lists them. A detector module imports no model library at module level (torch, cleanlab,
open_clip, timm, faiss, sklearn): the functions that need one import it, so reading the
registry and validating a config stay light (tests/test_runtime_imports.py).

``belief`` says what a label-type score means, for detectors that combine them: ``"held_out"``
when the score is a probability of the given label estimated without that sample's own label
(its likelihood can be compared across detectors), ``"in_sample"`` when a model that saw the
label produced it, None for detectors that do not judge labels.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from audit.executors import LocalExecutor

Progress = Callable[[float, str], None]

# What a detector judges: the given label, how typical the example is, copies, the image
# itself, or image-text agreement.
FAMILIES = ("label", "outlier", "duplicate", "quality", "consistency")

# What a detector may require; each maps to one attribute of DetectorInputs being present.
REQUIREMENTS = {
    "labels": "labels",
    "embeddings": "embeddings",
    "pred_probs": "pred_probs",
    "knn": "knn",
    "captions": "captions",
    "pixels": "load_image",
    "clip": "clip",
}


@dataclasses.dataclass
class KnnGraph:
    """Neighbours of every sample, self excluded, nearest first (cosine distance)."""

    indices: np.ndarray      # int64 (n, k): row numbers into DetectorInputs
    distances: np.ndarray    # float32 (n, k): 1 - cosine similarity, ascending per row
    exact: bool = True


# How many of a sample's nearest neighbours its details name.
NEIGHBOURS_SHOWN = 5


def nearest_ids(indices: np.ndarray, sample_ids: list[str],
                count: int = NEIGHBOURS_SHOWN) -> list[list[str]]:
    """The ids of each row's first ``count`` neighbours (``KnnGraph.indices``), one list per
    row, looked up for all rows at once."""
    return np.asarray(sample_ids, dtype=object)[indices[:, :count]].tolist()


def rounded(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """``round(value, digits)`` of every value, as float64, without a Python call per value:
    the same numbers as Python's ``round`` for float32 inputs (their product with 10**digits
    is exact); for float64 inputs a value within a rounding error of a tie may round the
    other way."""
    scale = 10.0 ** digits
    return np.rint(np.asarray(values, dtype=np.float64) * scale) / scale


@dataclasses.dataclass
class DetectorInputs:
    """Everything a detector may read, aligned row by row (usable samples, source order)."""

    sample_ids: list[str]
    labels: np.ndarray                      # int64 (n,) index into class_names
    class_names: list[str]
    splits: np.ndarray                      # str (n,)
    sha256: list[str]
    widths: np.ndarray                      # int (n,)
    heights: np.ndarray                     # int (n,)
    captions: list[str | None] | None = None        # None when the dataset has no captions
    embeddings: np.ndarray | None = None    # float32 (n, d), L2-normalised
    pred_probs: np.ndarray | None = None    # float (n, K), out-of-sample, rows sum to 1
    knn: KnnGraph | None = None
    load_image: Callable[[int], Image.Image] | None = None   # row -> RGB image
    clip: object | None = None              # a loaded pretrained CLIP (see audit.embedders.clip)
    seed: int = 0
    device: str = "cpu"
    prior_scores: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    trainable: np.ndarray | None = None     # bool (n,): a model may train on it (not removed)
    trusted: np.ndarray | None = None       # bool (n,): a reviewer kept it (audit.corrections)
    # the run's executor (audit.executors): per-image work goes through it
    executor: object = dataclasses.field(default_factory=LocalExecutor)
    measured_images: object | None = dataclasses.field(default=None, repr=False)  # the cache
    fitted_axes: object | None = dataclasses.field(default=None, repr=False)  # and this one

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    def image_measures(self, progress: Progress):
        """Every image's measures (``audit.image_measures.ImageMeasures``): each image decoded
        once by the run's executor for the first detector that asks, kept for the others."""
        if self.measured_images is None:
            from audit.image_measures import measure_images

            self.measured_images = measure_images(self.load_image, self.n, self.executor,
                                                  progress)
        return self.measured_images

    def principal_axes(self):
        """The embeddings' principal axes (``audit.principal.PrincipalAxes``): the ones the
        run fitted for its probe when it passed them, else fitted for the first detector that
        asks and kept for the others."""
        if self.fitted_axes is None:
            from audit.principal import principal_axes

            self.fitted_axes = principal_axes(self.embeddings)
        return self.fitted_axes


class Detector:
    """Base class: subclasses set the class attributes and implement ``score``."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    after: ClassVar[tuple[str, ...]] = ()
    reads_details: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[dict] = {}
    description: ClassVar[str] = ""
    family: ClassVar[str]
    suggests_labels: ClassVar[bool] = False
    belief: ClassVar[str | None] = None
    summary: dict | None = None

    @classmethod
    def facts(cls) -> dict:
        """What this detector declares, as plain data (JSON-ready)."""
        return {"name": cls.name, "family": cls.family, "suggests_labels": cls.suggests_labels,
                "belief": cls.belief, "requires": sorted(cls.requires), "after": list(cls.after),
                "reads_details": list(cls.reads_details), "params": dict(cls.params),
                "description": cls.description}

    def missing_requirements(self, inputs: DetectorInputs) -> str | None:
        """A plain-words reason this detector cannot run on these inputs, or None."""
        missing = [r for r in sorted(self.requires) if getattr(inputs, REQUIREMENTS[r]) is None]
        if missing:
            return f"needs {', '.join(missing)}, which this run does not have"
        absent = [name for name in self.after if name not in inputs.prior_scores]
        if absent:
            return f"needs the results of {', '.join(absent)}, which did not run"
        return None

    def run(self, inputs: DetectorInputs, params: dict | None = None,
            progress: Progress | None = None) -> pd.DataFrame:
        """Score with this class's ``params`` updated by ``params`` (the one place they are
        merged: the plan and the tests both call this)."""
        return self.score(inputs, {**self.params, **(params or {})},
                          progress or (lambda fraction, message: None))

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        """The scores, one row per sample in input order; ``params`` is complete."""
        raise NotImplementedError


REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    if cls.name in REGISTRY:
        raise ValueError(f"detector {cls.name!r} is registered twice")
    unknown = set(cls.requires) - set(REQUIREMENTS)
    if unknown:
        raise ValueError(f"detector {cls.name!r} requires unknown inputs {sorted(unknown)}")
    if getattr(cls, "family", None) not in FAMILIES:
        raise ValueError(f"detector {cls.name!r} needs a family, one of {', '.join(FAMILIES)}")
    REGISTRY[cls.name] = cls
    return cls


def result_frame(inputs: DetectorInputs, score: np.ndarray, is_issue: np.ndarray,
                 details: list[dict | None] | None = None) -> pd.DataFrame:
    """Build a detector's result, checking the score convention on the way out."""
    score = np.asarray(score, dtype=np.float64)
    if score.shape != (inputs.n,) or not np.all((score >= 0) & (score <= 1)):
        raise ValueError("a detector's scores must be n values in [0, 1]")
    return pd.DataFrame({
        "sample_id": inputs.sample_ids,
        "score": score,
        "is_issue": np.asarray(is_issue, dtype=bool),
        "details": details if details is not None else [None] * inputs.n,
    })

