"""Thumbnails: made once per content hash and size, small, safe with bad paths and files."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from audit.errors import InputError
from audit.images import ImageLoadError
from audit.thumbnails import GRID_SIZE, thumbnail, thumbnail_path


def _png(path, size=(400, 200), color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_made_once_and_cached_by_content_hash(settings, tmp_path):
    root = tmp_path / "images"
    digest = _png(root / "a" / "big.png")
    made = thumbnail(settings, root, "a/big.png", digest)
    assert made == thumbnail_path(settings, digest, GRID_SIZE)
    assert made.is_relative_to(settings.data_home / "thumbnails")
    with Image.open(made) as image:
        assert image.size == (192, 96)  # aspect kept, longest side = GRID_SIZE
    stamp = made.stat().st_mtime_ns
    (root / "a" / "big.png").unlink()  # a cached thumbnail needs no source any more
    assert thumbnail(settings, root, "a/big.png", digest).stat().st_mtime_ns == stamp


def test_tiny_images_are_enlarged_crisply(settings, tmp_path):
    digest = _png(tmp_path / "tiny.png", size=(8, 8))
    with Image.open(thumbnail(settings, tmp_path, "tiny.png", digest, size=64)) as image:
        assert image.size == (64, 64)


def test_a_path_outside_the_root_is_refused(settings, tmp_path):
    digest = _png(tmp_path / "outside.png")
    root = tmp_path / "dataset"
    root.mkdir()
    with pytest.raises(InputError, match="outside the dataset folder"):
        thumbnail(settings, root, "../outside.png", digest)
    assert not (settings.data_home / "thumbnails").exists()


def test_undecodable_file_and_missing_hash_raise_image_load_error(settings, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    digest = hashlib.sha256(broken.read_bytes()).hexdigest()
    with pytest.raises(ImageLoadError, match="not an image|cannot decode"):
        thumbnail(settings, tmp_path, "broken.png", digest)
    with pytest.raises(ImageLoadError, match="could not be read"):
        thumbnail(settings, tmp_path, "broken.png", None)
    with pytest.raises(InputError, match="not a sha256"):
        thumbnail(settings, tmp_path, "broken.png", "../../etc")
