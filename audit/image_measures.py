"""Every image's measures from one decode: ``image_quality``'s pixel measures and
``near_duplicate``'s perceptual-hash frequencies.

Both detectors read small thumbnails of the same decoded image, so a run decodes each image
once for both: the first of them to run calls ``DetectorInputs.image_measures`` and the other
reads the kept result. The first batch runs in the worker process (when none of its images can
be read, the rest are not tried), the others on the run's executor (``map_rows``: one after
another in the worker process, a Ray Data pipeline with ``executor = "ray"``), each decoding
its images in ``LOADER_THREADS`` threads. An image that cannot be read is recorded with its
reason (its measures are NaN, it has no hash) and the rest go on.

The measures of one image:

- quality: from a ``THUMB`` x ``THUMB`` RGB thumbnail (bilinear): the 99th and 5th percentiles
  of perceived brightness, the variance of the grey Laplacian, the entropy of the grey
  histogram and the mean HSV saturation (``PIXEL_CHECKS``; ``image_quality`` turns them into
  sub-scores against the dataset);
- frequencies and phash: the DC and lowest DCT terms of a ``perceptual_hash.THUMB`` grey
  thumbnail (box filter), ``near_duplicate``'s pixel-content vector, and the pHash of those
  terms (hashed before they are kept as float32).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from PIL import Image

from audit import perceptual_hash
from audit.errors import InputError
from audit.executors import concatenated
from audit.images import ImageLoadError

THUMB = 64
BATCH = 512            # images per batch (a Ray Data task on Ray)
LOADER_THREADS = min(4, os.cpu_count() or 1)   # on 2 CPUs 2 beat 4 (and 1 on JPEGs)
PIXEL_CHECKS = ("dark", "light", "blur_variance", "low_information", "saturation")
FREQUENCIES = perceptual_hash.HASH_BITS + 1     # the DC term and the pHash's AC terms


@dataclasses.dataclass(frozen=True)
class ImageMeasures:
    """The measures of every row (see the module doc), in row order."""

    quality: dict[str, np.ndarray]   # PIXEL_CHECKS -> float64 (n,), NaN where not decoded
    frequencies: np.ndarray          # float32 (n, FREQUENCIES), zeros where not decoded
    phash: np.ndarray                # uint64 (n,), 0 where not decoded
    errors: dict[int, str]           # row -> why its image could not be read

    @property
    def decoded(self) -> np.ndarray:
        """bool (n,): the rows whose image was read."""
        decoded = np.ones(len(self.frequencies), dtype=bool)
        decoded[list(self.errors)] = False
        return decoded


def measure_images(load_image: Callable[[int], Image.Image], n: int, executor,
                   progress: Callable[[float, str], None]) -> ImageMeasures:
    """The measures of rows ``0..n-1`` (``load_image(row)`` decodes one): the first batch
    here, the rest batch by batch on ``executor`` (``audit.executors``). When no image of the
    first batch can be read, the rest are not tried (a run without image files, such as
    one with given embeddings, would otherwise fail to open every file: 90 s at 1M)."""
    first = measure_batch({"row": np.arange(min(n, BATCH))}, load_image=load_image)
    if n and (first["error"] != "").all():
        return nothing_readable(first, n)
    rest = executor.map_rows(measure_batch, {"row": np.arange(min(n, BATCH), n)}, BATCH,
                             {"load_image": load_image}, progress, "measuring images")
    columns = concatenated([first, rest])
    errors = {row: str(reason) for row, reason in enumerate(columns["error"]) if reason}
    quality = {name: columns["quality"][:, i] for i, name in enumerate(PIXEL_CHECKS)}
    return ImageMeasures(quality, columns["frequencies"], columns["phash"], errors)


def nothing_readable(first: dict[str, np.ndarray], n: int) -> ImageMeasures:
    """The measures of ``n`` rows when no image of the ``first`` batch could be read: every
    row unread, the first batch's with their own reasons."""
    untried = (f"not read: none of the first {len(first['error'])} images could be read "
               f"({first['error'][0]})")
    errors = {row: str(first["error"][row]) if row < len(first["error"]) else untried
              for row in range(n)}
    return ImageMeasures({name: np.full(n, np.nan) for name in PIXEL_CHECKS},
                         np.zeros((n, FREQUENCIES), dtype=np.float32),
                         np.zeros(n, dtype=np.uint64), errors)


def measure_batch(batch: dict[str, np.ndarray], *, load_image) -> dict[str, np.ndarray]:
    """One batch of rows (``batch["row"]``) -> per row: ``error`` ("" when it decoded),
    ``quality`` (B, len(PIXEL_CHECKS)), ``frequencies`` (B, FREQUENCIES) and ``phash``."""
    rows = batch["row"]
    with ThreadPoolExecutor(LOADER_THREADS) as pool:
        loaded = list(pool.map(lambda row: _thumbnails(load_image, int(row)), rows))
    errors = np.array([item if isinstance(item, str) else "" for item in loaded], dtype=object)
    quality = np.full((len(rows), len(PIXEL_CHECKS)), np.nan)
    frequencies = np.zeros((len(rows), FREQUENCIES), dtype=np.float32)
    phash = np.zeros(len(rows), dtype=np.uint64)
    good = np.flatnonzero(errors == "")
    if len(good):
        colour = np.stack([loaded[i][0] for i in good])
        grey = np.stack([loaded[i][1] for i in good])
        measured = pixel_features(colour)
        quality[good] = np.stack([measured[name] for name in PIXEL_CHECKS], axis=1)
        terms = perceptual_hash.content_frequencies(grey)
        frequencies[good], phash[good] = terms, perceptual_hash.phash_of_low(terms[:, 1:])
    return {"error": errors, "quality": quality, "frequencies": frequencies, "phash": phash}


def _thumbnails(load_image, row: int) -> tuple[np.ndarray, np.ndarray] | str:
    """The colour and grey thumbnails of one row's image, or why it could not be read."""
    try:
        image = load_image(row)
    except (ImageLoadError, InputError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return colour_thumbnail(image), perceptual_hash.grey_thumbnail(image)


def colour_thumbnail(image: Image.Image) -> np.ndarray:
    """(THUMB, THUMB, 3) float32 RGB in 0..255, shrunk bilinearly."""
    return np.asarray(image.convert("RGB").resize((THUMB, THUMB), Image.BILINEAR),
                      dtype=np.float32)


def pixel_features(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image raw measures of a (B, THUMB, THUMB, 3) float batch in 0..255."""
    flat = batch.reshape(len(batch), -1, 3)
    bright = np.sqrt(flat ** 2 @ np.array([0.241, 0.691, 0.068], dtype=np.float32))
    low, high = np.percentile(bright, [5, 99], axis=1)
    grey = batch @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    red, green, blue = flat[..., 0], flat[..., 1], flat[..., 2]   # max(axis=2) is 9x slower
    top = np.maximum(np.maximum(red, green), blue)
    bottom = np.minimum(np.minimum(red, green), blue)
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
