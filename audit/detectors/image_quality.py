"""image_quality: dark, light, blurry, low-information, odd-size, odd-aspect and grayscale images.

Each image is decoded once and shrunk to a ``THUMB`` x ``THUMB`` RGB thumbnail; the checks run
vectorised on batches of thumbnails, each batch one task of the run's executor (in the worker
process, or a Ray task that decodes its images itself). Sub-scores (all in [0, 1], lower =
worse), with the threshold below which the check is an issue (params["thresholds"]):

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

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame
from audit.images import ImageLoadError

THUMB = 64
BATCH = 512
LOADER_THREADS = 4
THRESHOLDS = {"dark": 0.22, "light": 0.05, "blurry": 0.25, "low_information": 0.3,
              "odd_size": 0.5, "odd_aspect": 0.5, "grayscale": 0.2}
PIXEL_CHECKS = ("dark", "light", "blur_variance", "low_information", "saturation")
COLOUR_DATASET_SATURATION = 0.05
ROBUST_Z = 4.0
MIN_LOG_SPREAD = 0.1


def thumbnail(image: Image.Image) -> np.ndarray:
    image.draft("RGB", (THUMB, THUMB))
    return np.asarray(image.convert("RGB").resize((THUMB, THUMB), Image.BILINEAR), dtype=np.float32)


def pixel_features(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image raw measures of a (B, THUMB, THUMB, 3) float batch in 0..255."""
    flat = batch.reshape(len(batch), -1, 3)
    bright = np.sqrt(flat ** 2 @ np.array([0.241, 0.691, 0.068], dtype=np.float32))
    low, high = np.percentile(bright, [5, 99], axis=1)
    grey = batch @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    top, bottom = flat.max(axis=2), flat.min(axis=2)
    return {"dark": high / 255.0, "light": 1.0 - low / 255.0,
            "blur_variance": laplacian_variance(grey), "low_information": grey_entropy(grey),
            "saturation": ((top - bottom) / np.maximum(top, 1.0)).mean(axis=1)}


def laplacian_variance(grey: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each (B, H, W) grey image."""
    lap = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
           - 4 * grey[:, 1:-1, 1:-1])
    return lap.reshape(len(grey), -1).var(axis=1)


def grey_entropy(grey: np.ndarray) -> np.ndarray:
    """Shannon entropy of each image's 256-bin grey histogram, divided by 8 bits."""
    values = np.clip(grey, 0, 255).astype(np.int64).reshape(len(grey), -1)
    cells = (np.arange(len(grey))[:, None] * 256 + values).ravel()
    counts = np.bincount(cells, minlength=len(grey) * 256).reshape(len(grey), 256)
    p = counts / counts.sum(axis=1, keepdims=True)
    return -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1) / 8.0


def robust_z(values: np.ndarray) -> np.ndarray:
    spread = max(1.4826 * float(np.median(np.abs(values - np.median(values)))), MIN_LOG_SPREAD)
    return np.abs(values - np.median(values)) / spread


def odd_score(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + (robust_z(values) / ROBUST_Z) ** 2)


def quality_subscores(raw: dict[str, np.ndarray], widths: np.ndarray,
                      heights: np.ndarray) -> dict[str, np.ndarray]:
    """All sub-scores in [0, 1] (lower = worse) from raw measures and image sizes."""
    blur = raw["blur_variance"]
    saturation = raw["saturation"]
    colour = float(np.nanmedian(saturation)) >= COLOUR_DATASET_SATURATION
    w, h = np.maximum(widths, 1).astype(float), np.maximum(heights, 1).astype(float)
    return {"dark": raw["dark"], "light": raw["light"],
            "blurry": np.minimum(blur / max(float(np.nanmedian(blur)), 1e-6), 1.0),
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


def load_thumbnails(load_image, rows: range) -> tuple[np.ndarray, dict[int, str]]:
    """Thumbnails of ``rows`` (a failed image is black and its reason is returned)."""
    def load(row: int) -> np.ndarray | str:
        try:
            return thumbnail(load_image(row))
        except ImageLoadError as exc:
            return str(exc)
    with ThreadPoolExecutor(LOADER_THREADS) as pool:
        loaded = list(pool.map(load, rows))
    errors = {row: item for row, item in zip(rows, loaded) if isinstance(item, str)}
    blank = np.zeros((THUMB, THUMB, 3), dtype=np.float32)
    return np.stack([blank if isinstance(item, str) else item for item in loaded]), errors


def measure_batch(start: int, stop: int, *, load_image) -> tuple[dict, dict[int, str]]:
    """Raw measures of rows ``start`` to ``stop`` and their failed rows (one task)."""
    batch, failed = load_thumbnails(load_image, range(start, stop))
    return pixel_features(batch), failed


def measure_images(inputs: DetectorInputs, progress: Progress) -> tuple[dict, dict[int, str]]:
    """Raw measures of every image, batch by batch, through the run's executor."""
    batches = [(start, min(start + BATCH, inputs.n)) for start in range(0, inputs.n, BATCH)]
    measured = inputs.executor.map(measure_batch, batches, {"load_image": inputs.load_image},
                                   progress, "measuring image quality, batches")
    errors = {row: reason for _, failed in measured for row, reason in failed.items()}
    raw = {key: np.concatenate([part[key] for part, _ in measured]) for key in PIXEL_CHECKS}
    for row in errors:
        for key in PIXEL_CHECKS:
            raw[key][row] = np.nan
    return raw, errors


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
        raw, errors = measure_images(inputs, progress)
        subscores = quality_subscores(raw, np.asarray(inputs.widths), np.asarray(inputs.heights))
        failed = failed_checks(subscores, thresholds)
        score = np.nan_to_num(np.min(np.stack(list(subscores.values())), axis=0), nan=0.0)
        is_issue = failed.any(axis=1)
        is_issue[list(errors)] = True
        details = quality_details(subscores, failed, errors)
        return result_frame(inputs, np.clip(score, 0, 1), is_issue, details)
