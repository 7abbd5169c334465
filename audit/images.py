"""Reading images safely: facts for ingestion, RGB pixels for embedders and thumbnails.

Every decoder problem (missing file, not an image, truncated data, too many pixels) becomes
an ``ImageLoadError`` with a short reason, so callers can record it per sample and go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False
# The pixel limit is checked by ``load_rgb`` against the setting, from the header, before any
# decoding; PIL's own global guard would fire first with a fixed limit and a vaguer message.
Image.MAX_IMAGE_PIXELS = None
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageLoadError(Exception):
    """An image that cannot be used; ``str(exc)`` is the reason recorded for the sample."""


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    width: int | None
    height: int | None
    file_size: int | None
    sha256: str | None
    load_error: str | None


def inspect_image(path: Path, max_pixels: int) -> ImageFacts:
    """Size, hash and decodability of one file; never raises for a bad image."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageFacts(None, None, None, None, f"cannot read file: {exc.strerror or exc}")
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = load_rgb(path, max_pixels)
    except ImageLoadError as exc:
        return ImageFacts(None, None, len(data), digest, str(exc))
    return ImageFacts(image.width, image.height, len(data), digest, None)


def load_rgb(path: Path, max_pixels: int) -> Image.Image:
    """Decode a file to an upright 8-bit RGB image (EXIF rotation, 16-bit, CMYK, palette and
    alpha handled), refusing images over ``max_pixels`` before decoding them."""
    try:
        with Image.open(path) as image:
            _check_pixels(image, max_pixels)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError as exc:
        raise ImageLoadError("file not found") from exc
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
