"""Thumbnails for the dashboard, made once and cached under ``data_home/thumbnails/``.

A thumbnail is keyed by the image's content hash (sha256) and its size, so two samples with
the same bytes share one file and a changed file gets a new one. Images are decoded with
``audit.images.load_rgb`` (same safety limits as everywhere else); a sample path that would
leave its dataset's root is refused. Files are written to a temporary name and renamed, so a
reader never sees half a thumbnail. ``forget_thumbnails`` removes those of some images (a
deleted dataset's).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from audit.errors import InputError
from audit.images import ImageLoadError, load_rgb, sample_file
from audit.settings import Settings

GRID_SIZE = 192
LARGE_SIZE = 640


def thumbnail_path(settings: Settings, sha256: str, size: int) -> Path:
    """Where the thumbnail of this content at this size lives (it may not exist yet)."""
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise InputError(f"{sha256!r} is not a sha256 hex digest; re-ingest the dataset")
    return Path(settings.data_home) / "thumbnails" / str(size) / sha256[:2] / f"{sha256}.jpg"


def forget_thumbnails(settings: Settings, hashes: set[str]) -> int:
    """Remove the cached thumbnails (every size) of these content hashes; return how many."""
    folders = (Path(settings.data_home) / "thumbnails").glob("*")
    sizes = [folder.name for folder in folders if folder.name.isdigit()]
    removed = 0
    for size in sizes:
        for sha256 in hashes:
            path = thumbnail_path(settings, sha256, int(size))
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def thumbnail(settings: Settings, root: str | Path, relative_path: str, sha256: str | None,
              size: int = GRID_SIZE) -> Path:
    """The cached thumbnail of one sample's image, made on first use.

    Raises ``ImageLoadError`` (with the reason) when the image cannot be decoded, and
    ``InputError`` when the path leaves the dataset root or the sample has no content hash."""
    if sha256 is None:
        raise ImageLoadError("the file could not be read when the dataset was ingested")
    target = thumbnail_path(settings, sha256, size)
    if not target.is_file():
        source = sample_file(Path(root).resolve(), relative_path, settings.follow_outside_links)
        image = load_rgb(source, settings.max_image_pixels)
        _write_atomically(shrink(image, size), target)
    return target


def shrink(image: Image.Image, size: int) -> Image.Image:
    """A copy no larger than size x size, aspect kept; small images are enlarged with
    nearest-neighbour so tiny pictures (e.g. 8 x 8) stay visible and crisp."""
    copy = image.copy()
    if max(copy.size) >= size:
        copy.thumbnail((size, size), Image.Resampling.LANCZOS)
        return copy
    scale = max(1, size // max(copy.size))
    return copy.resize((copy.width * scale, copy.height * scale), Image.Resampling.NEAREST)


def _write_atomically(image: Image.Image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, format="JPEG", quality=88)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
