"""Reading dataset files safely: the one containment check, facts for ingestion, RGB pixels
for embedders and thumbnails.

A sample's file is found with ``sample_file`` (it stays inside the dataset's folder) and opened
with ``open_regular_file`` (never a FIFO, device or socket, and never blocking). Every decoder
problem (missing file, not an image, truncated data, too many pixels) becomes an
``ImageLoadError`` with a short reason, so callers can record it per sample and go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from audit.errors import InputError

ImageFile.LOAD_TRUNCATED_IMAGES = False
# The pixel limit is checked by ``load_rgb`` against the setting, from the header, before any
# decoding; PIL's own global guard would fire first with a fixed limit and a vaguer message.
Image.MAX_IMAGE_PIXELS = None
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
HASH_CHUNK_BYTES = 1 << 20
SPECIAL_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                      (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                      (stat.S_ISDIR, "a folder"))
LINK_SETTING = "follow_outside_links = true (AUDIT_FOLLOW_OUTSIDE_LINKS=1)"


# --- where a sample's file is, and opening it --------------------------------------------

def sample_file(root: Path, relative: str | Path, follow_links: bool) -> Path:
    """``root / relative`` resolved, refusing (``InputError``) an absolute path, a NUL byte, a
    ``..`` that climbs out of ``root`` and, unless ``follow_links``, a symbolic link that
    leads outside it. ``root`` must already be resolved. The one containment check: ingest,
    the audit and thumbnails all find a sample's file through it."""
    text = str(relative)
    joined = root / text
    if "\0" in text:
        raise InputError(f"path {text!r} contains a NUL byte; no file name can, fix the path")
    if Path(text).is_absolute() or not _lexically_inside(root, joined):
        raise InputError(f"path {text!r} leads outside the dataset folder {root}; use a path "
                         "relative to that folder, inside it")
    resolved = joined.resolve()
    if not follow_links and not resolved.is_relative_to(root):
        raise InputError(f"path {text!r} is a link to {resolved}, outside the dataset folder "
                         f"{root}; copy the file into the folder, or set {LINK_SETTING}")
    return resolved


def _lexically_inside(root: Path, joined: Path) -> bool:
    return Path(os.path.normpath(joined)).is_relative_to(root)


def open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading without blocking; an ``OSError`` for anything but a regular
    file (a FIFO would otherwise hang the reader, a device never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except ValueError as exc:  # a NUL byte in the path
        raise OSError(22, "the path contains a NUL byte") from exc
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind:
            raise OSError(22, f"{kind}, not a regular file; only regular files are read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def special_kind(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO"``, ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in SPECIAL_FILE_KINDS if test(mode)), "a special file")


def too_large(size: int, max_bytes: int) -> str | None:
    """Why a file of ``size`` bytes is not read, or None when it is within ``max_bytes``."""
    if size <= max_bytes:
        return None
    return (f"file is {size:,} bytes, over the limit of {max_bytes:,} (max_file_bytes; raise "
            "AUDIT_MAX_FILE_BYTES for trusted data)")


class ImageLoadError(Exception):
    """An image that cannot be used; ``str(exc)`` is the reason recorded for the sample."""


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    width: int | None
    height: int | None
    file_size: int | None
    sha256: str | None
    load_error: str | None


def inspect_image(path: Path, max_pixels: int, max_bytes: int) -> ImageFacts:
    """Size, hash and decodability of one file, read in chunks; never raises for a bad image.
    A special file or one over ``max_bytes`` is recorded unread."""
    try:
        with open_regular_file(path) as handle:
            return _inspect_open(handle, max_pixels, max_bytes)
    except OSError as exc:
        return ImageFacts(None, None, None, None, f"cannot read file: {exc.strerror or exc}")


def _inspect_open(handle: BinaryIO, max_pixels: int, max_bytes: int) -> ImageFacts:
    size = os.fstat(handle.fileno()).st_size
    refused = too_large(size, max_bytes)
    if refused:
        return ImageFacts(None, None, size, None, refused)
    digest = sha256_of(handle)
    handle.seek(0)
    try:
        image = _decode(handle, max_pixels)
    except ImageLoadError as exc:
        return ImageFacts(None, None, size, digest, str(exc))
    return ImageFacts(image.width, image.height, size, digest, None)


def sha256_of(handle: BinaryIO) -> str:
    """The SHA-256 of an open file, read in chunks of ``HASH_CHUNK_BYTES``."""
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def load_rgb(path: Path, max_pixels: int) -> Image.Image:
    """Decode a file to an upright 8-bit RGB image (EXIF rotation, 16-bit, CMYK, palette and
    alpha handled), refusing special files, and images over ``max_pixels`` before decoding."""
    try:
        with open_regular_file(path) as handle:
            return _decode(handle, max_pixels)
    except FileNotFoundError as exc:
        raise ImageLoadError("file not found") from exc
    except OSError as exc:
        raise ImageLoadError(f"cannot read file: {exc.strerror or exc}") from exc


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """The images of a run's usable samples by row: ``source(row)`` decodes one (as
    ``load_rgb``; ``ImageLoadError`` or ``InputError`` when it cannot). Plain data, so a Ray
    task can be given it and read the files itself."""

    root: Path
    relative_paths: tuple[str, ...]
    follow_links: bool
    max_pixels: int

    def __call__(self, row: int) -> Image.Image:
        return load_rgb(sample_file(self.root, self.relative_paths[row], self.follow_links),
                        self.max_pixels)


def _decode(handle: BinaryIO, max_pixels: int) -> Image.Image:
    try:
        with Image.open(handle) as image:
            _check_pixels(image, max_pixels)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError as exc:
        raise ImageLoadError("not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"cannot decode: {exc}") from exc


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageLoadError(
            f"{image.width} x {image.height} pixels is over the limit of {max_pixels:,}"
            " (decompression-bomb guard; raise AUDIT_MAX_IMAGE_PIXELS for trusted data)"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _high_depth_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    scaled = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")
