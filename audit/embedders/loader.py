"""Turning image files into rows of an embedder's output, shared by the embedders.

An embedder describes the work as a ``FileEncoding`` in two steps that can run apart: decode
(a file -> a tensor, by the embedder's transform; any CPU) and encode (a batch of those tensors
-> rows, where the model is; none for thumbnails, whose tensors are the rows). Here both run in
this process, decoding in DataLoader worker processes (``encode_files_locally``); the Ray
executor runs the same two steps as a Ray Data pipeline (``audit.ray_executor``).

Each item is decoded with ``audit.images.load_rgb`` (the safe decoder). A file that no longer
decodes does not stop the batch: its row is reported with the reason, zeroed by
``encode_cached``, and the embedder leaves it out of the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audit.embedders.cache import EmbeddingCache, encode_with_cache
from audit.errors import Cancelled
from audit.images import ImageLoadError, load_rgb

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]


@dataclasses.dataclass(frozen=True)
class FileEncoding:
    """How an embedder turns image files into output rows: ``transform`` (a decoded RGB image
    -> a tensor of ``shape``), then ``encode`` (a batch of those tensors -> rows of ``width``
    values); without ``encode`` the flattened tensors are the rows. ``cache_id`` names the
    rows in the embedding cache."""

    cache_id: str
    transform: Callable
    shape: tuple[int, ...]
    width: int
    dtype: type
    encode: Callable[[torch.Tensor], np.ndarray] | None = None

    def rows_of(self, tensors: torch.Tensor) -> np.ndarray:
        """A batch of transformed images -> its output rows."""
        if self.encode is not None:
            return self.encode(tensors)
        return tensors.reshape(len(tensors), -1).numpy().astype(self.dtype, copy=False)


# encode_files(encoding, paths, batch_size, loader_workers, max_pixels, progress,
#              should_cancel) -> (rows in path order, {failed position: reason})
EncodeFiles = Callable[..., tuple[np.ndarray, dict[int, str]]]


def encode_files_locally(encoding: FileEncoding, paths: list[Path], batch_size: int,
                         workers: int, max_pixels: int, progress: Progress | None = None,
                         should_cancel: ShouldCancel | None = None
                         ) -> tuple[np.ndarray, dict[int, str]]:
    """Rows of every file in order and the failed positions with the reason (their rows are
    what the encoding made of a blank image; ``encode_cached`` zeroes them); decoding in
    ``workers`` DataLoader processes."""
    dataset = DecodedImages(list(paths), encoding.transform, encoding.shape, max_pixels)
    out = np.zeros((len(paths), encoding.width), dtype=encoding.dtype)
    failed: dict[int, str] = {}
    for rows, tensors, errors in decoded_batches(dataset, batch_size, workers, progress,
                                                 should_cancel):
        out[rows] = encoding.rows_of(tensors)
        failed.update({int(r): e for r, e in zip(rows, errors) if e})
    return out, failed


def encode_cached(encoding: FileEncoding, paths: list[Path], hashes: list[str], context,
                  encode_files: EncodeFiles = encode_files_locally,
                  progress: Progress | None = None, should_cancel: ShouldCancel | None = None
                  ) -> tuple[np.ndarray, dict[int, str]]:
    """Rows of every file: those in the embedding cache (``context.data_home``, by sha256)
    read back, the others encoded by ``encode_files`` and cached; failed rows -> reason."""
    cache = EmbeddingCache(context.data_home, encoding.cache_id)

    def compute(missing: list[int]) -> tuple[np.ndarray, dict[int, str]]:
        rows, failed = encode_files(encoding, [paths[r] for r in missing], context.batch_size,
                                    context.loader_workers, context.max_image_pixels, progress,
                                    should_cancel)
        return rows, {missing[position]: reason for position, reason in failed.items()}

    return encode_with_cache(cache, hashes, compute)


class DecodedImages(Dataset):
    """Rows of ``paths`` as (row, tensor, error); the tensor is zeros when decoding failed."""

    def __init__(self, paths: list[Path], transform: Callable, shape: tuple[int, ...],
                 max_pixels: int):
        self.paths, self.transform, self.shape = paths, transform, shape
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int):
        try:
            image = load_rgb(Path(self.paths[row]), self.max_pixels)
        except ImageLoadError as exc:
            return row, torch.zeros(self.shape), f"{self.paths[row]}: {exc}"
        return row, self.transform(image), ""


def decoded_batches(dataset: DecodedImages, batch_size: int, workers: int,
                    progress: Progress | None = None,
                    should_cancel: ShouldCancel | None = None) -> Iterator[tuple]:
    """Yield (rows, tensors, errors) batches, reporting progress and polling cancel per batch."""
    loader = DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False,
                        num_workers=max(0, workers), pin_memory=torch.cuda.is_available())
    total, done = len(dataset), 0
    for rows, tensors, errors in loader:
        if should_cancel is not None and should_cancel():
            raise Cancelled("cancelled while decoding images")
        yield rows.numpy(), tensors, list(errors)
        done += len(rows)
        if progress is not None:
            progress(done / max(total, 1), f"embedded {done:,} of {total:,} images")
