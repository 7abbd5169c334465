"""Natural-looking test images and the copies a dataset picks up: shifted, cropped, resized,
re-encoded. Pink (1/f) noise in colour with a few soft shapes, drawn from a seed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIDE = 128
MARGIN = 8          # each scene is drawn larger, so a shifted copy shows new content at an edge


def scene(seed: int) -> Image.Image:
    """A (SIDE + 2 MARGIN)-pixel square colour scene."""
    rng = np.random.default_rng(seed)
    side = SIDE + 2 * MARGIN
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side)))
    freq[0, 0] = 1.0
    channels = [np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(side, side))) / freq ** 1.3))
                for _ in range(3)]
    pixels = np.stack(channels, axis=-1)
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()) * 255
    image = Image.fromarray(pixels.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.integers(0, side - 40, size=2)
        w, h = rng.integers(20, 60, size=2)
        draw.ellipse([int(x), int(y), int(x + w), int(y + h)],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image.filter(ImageFilter.GaussianBlur(1.0))


def original(seed: int) -> Image.Image:
    return scene(seed).crop((MARGIN, MARGIN, MARGIN + SIDE, MARGIN + SIDE))


def shifted(seed: int, dx: int, dy: int) -> Image.Image:
    """The same scene framed ``dx``, ``dy`` pixels further (|dx|, |dy| <= MARGIN)."""
    return scene(seed).crop((MARGIN + dx, MARGIN + dy, MARGIN + dx + SIDE, MARGIN + dy + SIDE))


def cropped(image: Image.Image, fraction: float) -> Image.Image:
    """``fraction`` of the width and height cut, split between the two sides."""
    cut_w, cut_h = round(image.width * fraction / 2), round(image.height * fraction / 2)
    return image.crop((cut_w, cut_h, image.width - cut_w, image.height - cut_h))


def resized(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.BILINEAR)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def copies(seed: int) -> dict[str, Image.Image]:
    """One copy of scene ``seed`` per kind, as measured in ``audit.perceptual_hash``."""
    base = original(seed)
    return {"shift 2 px": shifted(seed, 2, -1), "crop 5%": cropped(base, 0.05),
            "resize 0.6": resized(base, 0.6), "JPEG q=50": jpeg(base, 50),
            "shift 2 px + JPEG q=70": jpeg(shifted(seed, -1, 2), 70)}
