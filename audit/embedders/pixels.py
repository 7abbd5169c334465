"""The weight-free floor: 32x32 thumbnails, contrast-normalised, reduced with PCA.

Thumbnails (uint8, 32x32x3) are cached per image by sha256; the PCA is fitted on the
dataset at hand (cheap), so the vectors describe colour layout and coarse shape only.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from sklearn.decomposition import PCA

from audit.embedders import (EmbedContext, Embedding, ImageRows, Progress, ShouldCancel,
                             l2_normalise)
from audit.embedders.loader import (EncodeFiles, FileEncoding, encode_cached,
                                    encode_files_locally)

THUMB_SIDE = 32
THUMB_SHAPE = (THUMB_SIDE, THUMB_SIDE, 3)
PCA_DIMS = 64


def to_thumbnail(image: Image.Image) -> torch.Tensor:
    """An RGB image as a 32x32x3 uint8 tensor (area-averaged resize)."""
    small = image.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(small, dtype=np.uint8).copy())


THUMBNAILS = FileEncoding(f"thumbnails-{THUMB_SIDE}", to_thumbnail, THUMB_SHAPE,
                          int(np.prod(THUMB_SHAPE)), np.uint8)


def thumbnails(rows: ImageRows, context: EmbedContext, progress: Progress | None = None,
               should_cancel: ShouldCancel | None = None,
               encode_files: EncodeFiles = encode_files_locally
               ) -> tuple[np.ndarray, dict[int, str]]:
    """uint8 (n, 32, 32, 3) thumbnails of every row (cached), and rows that failed to decode."""
    flat, failed = encode_cached(THUMBNAILS, rows.paths, rows.hashes, context, encode_files,
                                 progress, should_cancel)
    return flat.reshape(-1, *THUMB_SHAPE), failed


def pixel_pca(thumbs: np.ndarray, dims: int = PCA_DIMS, seed: int = 0) -> np.ndarray:
    """Contrast-normalised pixels projected on their top principal components, L2-normalised."""
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32) / 255.0
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= flat.std(axis=1, keepdims=True) + 0.05
    if len(flat) < 2:
        return np.ones((len(flat), 1), dtype=np.float32)
    dims = min(dims, len(flat) - 1, flat.shape[1])
    reduced = PCA(n_components=dims, random_state=seed, svd_solver="randomized").fit_transform(flat)
    return l2_normalise(reduced)


class PixelEmbedder:
    """Raw pixels + PCA; needs no weights and knows nothing about semantics."""

    name = "pixels"

    def __init__(self, context: EmbedContext):
        self.context = context
        self.model_id = f"pixels-{THUMB_SIDE}px-pca{PCA_DIMS}"

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None,
              encode_files: EncodeFiles = encode_files_locally) -> Embedding:
        thumbs, failed = thumbnails(rows, self.context, progress, should_cancel, encode_files)
        return self.from_thumbnails(thumbs, failed)

    def from_thumbnails(self, thumbs: np.ndarray, failed: dict[int, str]) -> Embedding:
        """The vectors of every row from its thumbnail (rows in ``failed`` stay zeros)."""
        usable = np.setdiff1d(np.arange(len(thumbs)), list(failed))
        vectors = np.zeros((len(thumbs), 1), dtype=np.float32)
        if len(usable):
            reduced = pixel_pca(thumbs[usable], seed=self.context.seed)
            vectors = np.zeros((len(thumbs), reduced.shape[1]), dtype=np.float32)
            vectors[usable] = reduced
        return Embedding(vectors, self.model_id, failed)
