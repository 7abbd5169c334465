"""A small CNN trained on the data itself, cross-fitted so every vector is out-of-sample.

The samples are split into the probe's stratified folds; for each fold a small CNN is trained
on the other folds' 32x32 thumbnails and applied to the held-out fold. Hidden features of
different fold models live in different spaces, so the vector of a sample is built from what
*is* comparable across folds: the held-out class log-probabilities (centred), joined with the
pixel-PCA vector (shared by all folds) for appearance. Seeded; a few epochs on the CPU.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from audit.embedders import (EmbedContext, Embedding, ImageRows, Progress, ShouldCancel,
                             l2_normalise)
from audit.embedders.cache import EmbeddingCache, encode_with_cache
from audit.embedders.pixels import pixel_pca, thumbnails
from audit.errors import Cancelled
from audit.probe import stratified_folds

EPOCHS = 6
BATCH = 128
PREDICTION_WEIGHT = 0.7   # share of the vector given to the held-out class log-probabilities


def small_cnn(n_classes: int) -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, n_classes))


def _as_tensor(thumbs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(thumbs).permute(0, 3, 1, 2).float().div(255.0).sub(0.5)


def _shifted(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (pad and crop), the only augmentation."""
    padded = nn.functional.pad(batch, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + batch.shape[2], dx:dx + batch.shape[3]]


def train_cnn(images: torch.Tensor, labels: np.ndarray, n_classes: int, seed: int,
              epochs: int = EPOCHS, should_cancel: ShouldCancel | None = None) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = small_cnn(n_classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    targets = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        if should_cancel is not None and should_cancel():
            raise Cancelled("cancelled while training the CNN embedder")
        for batch in torch.randperm(len(images), generator=generator).split(BATCH):
            loss = nn.functional.cross_entropy(model(_shifted(images[batch], generator)),
                                               targets[batch], label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def held_out_log_probs(thumbs: np.ndarray, labels: np.ndarray, n_classes: int, folds: int,
                       seed: int, epochs: int = EPOCHS, progress: Progress | None = None,
                       should_cancel: ShouldCancel | None = None) -> np.ndarray:
    """Out-of-sample log-probabilities (n, n_classes) from cross-fitted CNNs."""
    images = _as_tensor(thumbs)
    fold_of, n_folds, _ = stratified_folds(labels, folds, seed)
    out = np.zeros((len(thumbs), n_classes), dtype=np.float32)
    for fold in range(n_folds):
        held = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        model = train_cnn(images[train], labels[train], n_classes, seed + fold, epochs,
                          should_cancel)
        with torch.inference_mode():
            out[held] = torch.log_softmax(model(images[held]), dim=1).numpy()
        if progress is not None:
            progress((fold + 1) / n_folds, f"trained CNN fold {fold + 1} of {n_folds}")
    return out


def combine(log_probs: np.ndarray, appearance: np.ndarray) -> np.ndarray:
    centred = log_probs - log_probs.mean(axis=1, keepdims=True)
    parts = [l2_normalise(centred) * np.sqrt(PREDICTION_WEIGHT),
             appearance * np.sqrt(1.0 - PREDICTION_WEIGHT)]
    return l2_normalise(np.concatenate(parts, axis=1))


class CnnEmbedder:
    """Cross-fitted small CNN; falls back to pixels alone when there is only one class."""

    name = "cnn"

    def __init__(self, context: EmbedContext, epochs: int = EPOCHS):
        self.context, self.epochs = context, epochs
        self.model_id = f"cnn-crossfit-e{epochs}"

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None) -> Embedding:
        thumbs, failed = thumbnails(rows, self.context, _scaled(progress, 0.0, 0.3), should_cancel)
        usable = np.setdiff1d(np.arange(len(thumbs)), list(failed))
        model_id = f"{self.model_id}-{self._fingerprint(rows, usable)}"
        cache = EmbeddingCache(self.context.data_home, model_id)
        hashes = [rows.hashes[r] for r in usable]

        def compute(missing: list[int]):   # cross-fitting needs every row, whatever is cached
            vectors = self._vectors(thumbs[usable], rows.labels[usable], progress, should_cancel)
            return vectors[missing], {}

        if not len(usable):
            return Embedding(np.zeros((len(thumbs), 1), np.float32), model_id, failed)
        vectors, _ = encode_with_cache(cache, hashes, compute)
        full = np.zeros((len(thumbs), vectors.shape[1]), dtype=np.float32)
        full[usable] = vectors
        return Embedding(full, model_id, failed)

    def _vectors(self, thumbs, labels, progress, should_cancel) -> np.ndarray:
        appearance = pixel_pca(thumbs, seed=self.context.seed)
        classes, dense = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            return appearance
        log_probs = held_out_log_probs(thumbs, dense, len(classes), self.context.folds,
                                       self.context.seed, self.epochs,
                                       _scaled(progress, 0.3, 1.0), should_cancel)
        return combine(log_probs, appearance)

    def _fingerprint(self, rows: ImageRows, usable: np.ndarray) -> str:
        digest = hashlib.sha256(f"{self.context.seed}|{self.context.folds}".encode())
        for row in usable:
            digest.update(f"{rows.hashes[row]}:{int(rows.labels[row])};".encode())
        return digest.hexdigest()[:16]


def _scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, message)
