"""Batched image decoding in DataLoader worker processes, shared by the embedders.

Each item is decoded with ``audit.images.load_rgb`` (the safe decoder) and turned into a tensor
by the embedder's transform. A file that no longer decodes does not stop the batch: its row is
reported with the reason and the embedder leaves it out of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from audit.errors import Cancelled
from audit.images import ImageLoadError, load_rgb

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]


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
