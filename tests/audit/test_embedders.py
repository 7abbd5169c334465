"""Embedders on real image files: a tiny random-weight open_clip, pixels, the CNN, the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit.embedders import EmbedContext, ImageRows, make_embedder
from audit.embedders.cache import EmbeddingCache, encode_with_cache, safe_model_dir_name
from audit.embedders.clip import ClipEmbedder, load_clip
from audit.embedders.cnn import CnnEmbedder
from audit.embedders.loader import encode_files_locally
from audit.embedders.pixels import PixelEmbedder
from audit.errors import ConfigError, ModelUnavailableError


def write_images(folder: Path, colours: list[tuple[int, int, int]], seed: int = 0) -> ImageRows:
    """One noisy 24x24 PNG per colour; labels = 0 for reddish, 1 otherwise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i, colour in enumerate(colours):
        pixels = np.clip(np.array(colour) + rng.normal(0, 12, (24, 24, 3)), 0, 255)
        pixels[8:16, 4 + i % 8:12 + i % 8] = 255 - np.array(colour)   # a shape that moves
        paths.append(folder / f"img{i:03d}.png")
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1])
        labels.append(0 if colour[0] > colour[2] else 1)
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return ImageRows(paths, hashes, np.array(labels))


def two_colours(n_each: int) -> list[tuple[int, int, int]]:
    return [(200, 40, 30)] * n_each + [(30, 60, 210)] * n_each


def context(data_home: Path, **overrides) -> EmbedContext:
    values = dict(data_home=data_home, max_image_pixels=10_000_000, batch_size=8,
                  loader_workers=0, device="cpu", seed=0, folds=3)
    return EmbedContext(**{**values, **overrides})


def test_tiny_clip_encodes_images_and_texts(tiny_clip_name, tmp_path):
    clip = load_clip(tiny_clip_name, None, "cpu")
    rows = write_images(tmp_path / "img", two_colours(3))
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"not a png")
    vectors, failed = encode_files_locally(clip.file_encoding(), rows.paths + [broken],
                                           batch_size=4, workers=1, max_pixels=10_000_000)
    assert vectors.shape == (7, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:6], axis=1), 1.0, atol=1e-5)
    assert list(failed) == [6] and "broken.png" in failed[6]
    texts = clip.encode_texts(["a photo of a cat", "a photo of a dog", "a photo of a cat"])
    np.testing.assert_allclose(texts[0], texts[2], atol=1e-6)
    assert np.abs(texts[0] - texts[1]).max() > 1e-3
    assert clip.pretrained is False and clip.model_id == f"clip-{tiny_clip_name}-random"


def test_clip_loads_a_local_checkpoint_file(tiny_clip_name, tmp_path):
    random_model = load_clip(tiny_clip_name, None, "cpu")
    with torch.no_grad():
        for parameter in random_model.model.parameters():
            parameter.add_(0.01)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(random_model.model.state_dict(), checkpoint)
    loaded = load_clip(tiny_clip_name, str(checkpoint), "cpu")
    assert loaded.pretrained is True and loaded.model_id.startswith(f"clip-{tiny_clip_name}-file-")
    texts = ["a photo of a two"]
    np.testing.assert_allclose(loaded.encode_texts(texts), random_model.encode_texts(texts),
                               atol=1e-5)


def test_missing_weights_fail_fast_with_the_fix(tmp_path):
    with pytest.raises(ModelUnavailableError) as caught:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    message = str(caught.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert "--clip-pretrained" in message
    with pytest.raises(ConfigError, match="not-a-tag"):
        load_clip("ViT-B-32", "not-a-tag", "cpu")
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        load_clip("no-such-model", None, "cpu")
    with pytest.raises(ModelUnavailableError, match="bad.pt"):
        (tmp_path / "bad.pt").write_bytes(b"garbage")
        load_clip("ViT-B-32", str(tmp_path / "bad.pt"), "cpu")


def test_auto_falls_back_to_the_imagenet_embedder_with_the_reason(data_home):
    embedder, note = make_embedder("auto", context(data_home))
    assert embedder.name == "imagenet" and "ViT-B-32" in note and note.startswith("clip not used")
    with pytest.raises(ModelUnavailableError):
        make_embedder("clip", context(data_home))
    with pytest.raises(ConfigError, match="unknown embedder 'vit'"):
        make_embedder("vit", context(data_home))


def test_second_run_reads_the_cache_and_encodes_only_new_images(tiny_clip_name, tmp_path,
                                                                data_home):
    clip = load_clip(tiny_clip_name, None, "cpu")
    encoded = []
    original = clip.encode_tensor
    clip.encode_tensor = lambda batch: encoded.append(len(batch)) or original(batch)
    rows = write_images(tmp_path / "img", two_colours(5))
    embedder = ClipEmbedder(clip, context(data_home))
    first = embedder.embed(rows).vectors
    assert sum(encoded) == 10
    second = embedder.embed(rows).vectors
    assert sum(encoded) == 10                          # nothing encoded again
    np.testing.assert_array_equal(first, second)
    more = write_images(tmp_path / "more", [(10, 200, 10)], seed=5)
    grown = ImageRows(rows.paths + more.paths, rows.hashes + more.hashes,
                      np.append(rows.labels, 1))
    third = embedder.embed(grown).vectors
    assert sum(encoded) == 11 and third.shape == (11, 32)
    np.testing.assert_array_equal(third[:10], first)
    folder = data_home / "embeddings" / safe_model_dir_name(clip.model_id)
    assert len(list(folder.glob("part-*.npy"))) == 2


def test_failed_rows_are_zeros_and_never_cached(data_home):
    """Whatever ``compute`` made of a row that failed (a blank image's vector), the result holds
    zeros there and the cache does not keep it."""
    cache = EmbeddingCache(data_home, "model")
    vectors, failed = encode_with_cache(cache, ["a", "b"], lambda rows: (
        np.ones((len(rows), 3), np.float32), {1: "b.png: broken"}))
    assert failed == {1: "b.png: broken"}
    assert vectors[0].tolist() == [1, 1, 1] and not vectors[1].any()
    assert cache.lookup(["a", "b"])[1] == [1]


def test_cache_lookup_is_keyed_by_content_hash(data_home):
    cache = EmbeddingCache(data_home, "../escape attempt/model")
    assert cache.folder.parent == data_home / "embeddings"
    cache.store(["aa", "bb"], np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    found, missing = cache.lookup(["bb", "cc", "aa"])
    assert missing == [1] and found["bb"].tolist() == [0.0, 1.0]


def test_pixel_embedder_separates_colours_and_dedupes(tmp_path, data_home):
    rows = write_images(tmp_path / "img", two_colours(12))
    twin = tmp_path / "img" / "twin.png"
    twin.write_bytes(rows.paths[0].read_bytes())
    rows = ImageRows(rows.paths + [twin], rows.hashes + [rows.hashes[0]],
                     np.append(rows.labels, 0))
    result = PixelEmbedder(context(data_home)).embed(rows)
    vectors = result.vectors
    assert vectors.shape == (25, 24) and not result.failed   # PCA dims <= n - 1
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[24], atol=1e-5)
    similarity = vectors @ vectors.T
    same = similarity[:12, :12].mean()
    other = similarity[:12, 12:24].mean()
    assert same > other + 0.5


def test_cnn_embedder_is_out_of_sample_and_cached(tmp_path, data_home):
    rows = write_images(tmp_path / "img", two_colours(15))
    embedder = CnnEmbedder(context(data_home), epochs=1)
    first = embedder.embed(rows)
    assert first.vectors.shape[0] == 30 and np.isfinite(first.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    trained = []
    import audit.embedders.cnn as cnn_module
    original = cnn_module.train_cnn
    cnn_module.train_cnn = lambda *a, **k: trained.append(1) or original(*a, **k)
    try:
        again = embedder.embed(rows)
        flipped = ImageRows(rows.paths, rows.hashes, 1 - rows.labels)
        other = embedder.embed(flipped)
    finally:
        cnn_module.train_cnn = original
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert len(trained) == 3                      # only the relabelled data trains (3 folds)
    assert other.model_id != first.model_id
