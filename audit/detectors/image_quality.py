"""image_quality: dark, light, blurry, low-information, odd-size, odd-aspect and grayscale images.

The raw measures of each image come from ``audit.image_measures`` (one decode per image,
shared with ``near_duplicate``, on the run's executor: a Ray Data pipeline on Ray); this module
turns them into sub-scores against the dataset. Sub-scores (all in [0, 1], lower = worse), with
the threshold below which the check is an issue (params["thresholds"]):

- dark: 99th percentile of perceived brightness / 255 (cleanvision; issue below 0.22);
- light: 1 - 5th percentile of perceived brightness / 255 (cleanvision; issue below 0.05);
- blurry: ``min(1, v / median v)`` with ``v`` the variance of the Laplacian of the grey
  thumbnail, relative to the dataset so inherently smooth datasets are not all blurry (below
  0.25; a dark or washed-out image has little detail too and may fail both checks);
- low_information: entropy of the grey histogram / 8 bits (cleanvision; below 0.3);
- odd_size / odd_aspect: robust z of log(sqrt(area)) / log(width / height) against the dataset
  median (MAD, floored at 0.1), as ``1 / (1 + (z / 4)^2)`` (below 0.5, i.e. z > 4);
- grayscale: mean HSV saturation / 0.05, capped at 1; only in a dataset whose median saturation
  shows colour (issue below 0.2).

Score = min of the sub-scores; ``details["issues"]`` names the failed checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame

THRESHOLDS = {"dark": 0.22, "light": 0.05, "blurry": 0.25, "low_information": 0.3,
              "odd_size": 0.5, "odd_aspect": 0.5, "grayscale": 0.2}
COLOUR_DATASET_SATURATION = 0.05
ROBUST_Z = 4.0
MIN_LOG_SPREAD = 0.1


def robust_z(values: np.ndarray) -> np.ndarray:
    spread = max(1.4826 * float(np.median(np.abs(values - np.median(values)))), MIN_LOG_SPREAD)
    return np.abs(values - np.median(values)) / spread


def odd_score(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + (robust_z(values) / ROBUST_Z) ** 2)


def measured_median(values: np.ndarray) -> float:
    """The median of the measured values (NaN: an unread image); NaN when none was measured
    (``np.nanmedian`` without its warning)."""
    measured = values[~np.isnan(values)]
    return float(np.median(measured)) if len(measured) else float("nan")


def quality_subscores(raw: dict[str, np.ndarray], widths: np.ndarray,
                      heights: np.ndarray) -> dict[str, np.ndarray]:
    """All sub-scores in [0, 1] (lower = worse) from raw measures and image sizes."""
    blur = raw["blur_variance"]
    saturation = raw["saturation"]
    colour = measured_median(saturation) >= COLOUR_DATASET_SATURATION
    w, h = np.maximum(widths, 1).astype(float), np.maximum(heights, 1).astype(float)
    return {"dark": raw["dark"], "light": raw["light"],
            "blurry": np.minimum(blur / max(measured_median(blur), 1e-6), 1.0),
            "low_information": raw["low_information"],
            "odd_size": odd_score(0.5 * np.log(w * h)), "odd_aspect": odd_score(np.log(w / h)),
            "grayscale": np.minimum(saturation / 0.05, 1.0) if colour else np.ones_like(blur)}


def failed_checks(subscores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    """(n, checks) boolean: which sub-score is below its threshold."""
    return np.stack([subscores[name] < thresholds[name] for name in subscores], axis=1)


def quality_details(subscores: dict[str, np.ndarray], failed: np.ndarray,
                    errors: dict[int, str]) -> list[dict]:
    names = list(subscores)
    table = np.stack([subscores[name] for name in names], axis=1)
    return [_one_detail(i, names, table[i], failed[i], errors) for i in range(len(table))]


def _one_detail(row: int, names: list[str], values: np.ndarray, failed: np.ndarray,
                errors: dict[int, str]) -> dict:
    if row in errors:
        return {"reason": f"the image could not be read: {errors[row]}", "issues": ["unreadable"]}
    issues = [name for name, bad in zip(names, failed) if bad]
    reason = ("looks " + ", ".join(n.replace("_", " ") for n in issues)) if issues else \
        "no quality problem found"
    return {"reason": reason, "issues": issues,
            **{name: round(float(v), 4) for name, v in zip(names, values)}}


@register
class ImageQuality(Detector):
    name = "image_quality"
    family = "quality"
    requires = frozenset({"pixels"})
    params = {"thresholds": THRESHOLDS}
    description = ("Image quality (cleanvision-style): dark, light, blurry, low information, "
                   "odd size or aspect ratio, grayscale.")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        thresholds = {**THRESHOLDS, **params.get("thresholds", {})}
        measures = inputs.image_measures(progress)
        raw, errors = measures.quality, measures.errors
        subscores = quality_subscores(raw, np.asarray(inputs.widths), np.asarray(inputs.heights))
        failed = failed_checks(subscores, thresholds)
        score = np.nan_to_num(np.min(np.stack(list(subscores.values())), axis=0), nan=0.0)
        is_issue = failed.any(axis=1)
        is_issue[list(errors)] = True
        details = quality_details(subscores, failed, errors)
        return result_frame(inputs, np.clip(score, 0, 1), is_issue, details)
