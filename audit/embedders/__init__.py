"""Embedders: images -> L2-normalised float32 vectors, one row per sample.

- ``clip``: open_clip image tower (pretrained tag or local checkpoint); the real choice.
- ``pixels``: 32x32 thumbnails reduced with PCA; no weights, the honest floor.
- ``cnn``: a small CNN trained on the data itself with cross-fitting; no weights needed.
- ``auto``: ``clip`` when its pretrained weights load, else ``OFFLINE_DEFAULT``.

Every embedder caches its vectors under ``<data_home>/embeddings/<model id>/`` by sample
sha256 (see ``cache``), so a rerun with other detector settings does not recompute them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from audit.errors import ConfigError, ModelUnavailableError

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]
EMBEDDER_CHOICES = ("auto", "clip", "pixels", "cnn")
# Measured on the demo and CIFAR-10N (docs/benchmarks.md, "Engine speed"): see bench_embedders.
OFFLINE_DEFAULT = "pixels"


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


class Embedder(Protocol):
    name: str
    model_id: str

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None) -> Embedding: ...


def make_embedder(name: str, context: EmbedContext, clip_model: str = "ViT-B-32",
                  clip_pretrained: str = "laion2b_s34b_b79k") -> tuple[Embedder, str | None]:
    """Build the named embedder; for ``auto`` also return why CLIP was not used (or None)."""
    if name not in EMBEDDER_CHOICES:
        raise ConfigError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDER_CHOICES)}")
    if name in ("clip", "auto"):
        try:
            return _clip_embedder(context, clip_model, clip_pretrained), None
        except ModelUnavailableError as exc:
            if name == "clip":
                raise
            return make_embedder(OFFLINE_DEFAULT, context)[0], f"CLIP not used: {exc}"
    return _offline_embedder(name, context), None


def _clip_embedder(context: EmbedContext, model: str, pretrained: str) -> Embedder:
    from audit.embedders.clip import ClipEmbedder, load_clip

    return ClipEmbedder(load_clip(model, pretrained, context.device), context)


def _offline_embedder(name: str, context: EmbedContext) -> Embedder:
    if name == "pixels":
        from audit.embedders.pixels import PixelEmbedder
        return PixelEmbedder(context)
    from audit.embedders.cnn import CnnEmbedder
    return CnnEmbedder(context)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
