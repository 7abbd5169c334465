"""Decoding real image files of awkward kinds into upright 8-bit RGB."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audit.images import ImageLoadError, inspect_image, load_rgb

LIMIT = 100_000_000
MAX_BYTES = 1 << 20


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (12, 7), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    image = load_rgb(path, LIMIT)
    assert image.mode == "RGB" and image.size == (12, 7)
    red, green, blue = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((5, 6), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_rgb(path, LIMIT))
    assert pixels.shape == (5, 6, 3)
    assert 120 <= pixels.mean() <= 135  # half of full scale, not saturated at 255


def test_palette_with_transparency_and_alpha_go_onto_white(tmp_path: Path) -> None:
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(rgba)
    assert np.asarray(load_rgb(rgba, LIMIT)).min() == 255
    palette = tmp_path / "palette.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).convert("P").save(palette, transparency=0)
    assert load_rgb(palette, LIMIT).mode == "RGB"
    opaque = tmp_path / "opaque_palette.gif"
    Image.new("RGB", (4, 4), (10, 200, 10)).convert("P").save(opaque)
    red, green, blue = np.asarray(load_rgb(opaque, LIMIT))[0, 0].astype(int)
    assert green > 180 and red < 40 and blue < 40


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (20, 10), "white").save(path, exif=exif.tobytes())
    image = load_rgb(path, LIMIT)
    assert image.size == (10, 20)
    assert inspect_image(path, LIMIT, MAX_BYTES).width == 10


def test_truncated_png_and_non_image_are_reported(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "blue").save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "text.png"
    text.write_text("hello")
    assert "truncated" in inspect_image(truncated, LIMIT, MAX_BYTES).load_error or \
        "cannot decode" in inspect_image(truncated, LIMIT, MAX_BYTES).load_error
    facts = inspect_image(text, LIMIT, MAX_BYTES)
    assert facts.load_error == "not an image (unrecognised format)"
    assert facts.file_size == 5 and len(facts.sha256) == 64
    missing = inspect_image(tmp_path / "missing.png", LIMIT, MAX_BYTES)
    assert missing.load_error.startswith("cannot read file")


def _png_claiming_size(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def test_twenty_thousand_square_image_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_claiming_size(path, 20_000, 20_000)
    with pytest.raises(ImageLoadError, match="20000 x 20000 pixels is over the limit"):
        load_rgb(path, LIMIT)
    assert "over the limit" in inspect_image(path, LIMIT, MAX_BYTES).load_error
