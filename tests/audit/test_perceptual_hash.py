"""perceptual_hash: pHash of real images, and the multi-index search for close hashes."""

import math

import numpy as np
import pytest
from PIL import Image

from audit.perceptual_hash import (HASH_BITS, band_layout, flip_masks, grey_thumbnail, hamming,
                                   nearest_distances, pack_bits, pairs_within_radius, phash)
from tests.audit import natural_images

SCENES = 40


def hashes_of(images: list[Image.Image]) -> np.ndarray:
    return phash(np.stack([grey_thumbnail(image) for image in images]))


def brute_force_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    bits = hamming(hashes[:, None], hashes[None, :])
    rows, cols = np.nonzero(np.triu(bits <= radius, k=1))
    return np.stack([rows, cols], axis=1)


def clustered_hashes(n: int, seed: int) -> np.ndarray:
    """Random hashes in groups of four, each member with up to 6 random bits flipped, and
    exact copies of the first 20."""
    rng = np.random.default_rng(seed)
    hashes = np.repeat(rng.integers(0, 2 ** 64, n // 4, dtype=np.uint64, endpoint=False), 4)
    for _ in range(6):
        flip = np.uint64(1) << rng.integers(0, 64, len(hashes)).astype(np.uint64)
        hashes = np.where(rng.random(len(hashes)) < 0.5, hashes ^ flip, hashes)
    return np.concatenate([hashes, hashes[:20]])


@pytest.fixture(scope="module")
def scene_hashes() -> np.ndarray:
    return hashes_of([natural_images.original(seed) for seed in range(SCENES)])


def test_pack_bits_puts_the_first_column_in_the_top_bit():
    bits = np.zeros((2, HASH_BITS), dtype=bool)
    bits[0, 0] = True
    bits[1, [62, 63]] = True
    assert pack_bits(bits).tolist() == [2 ** 63, 3]


def test_hamming_counts_differing_bits():
    a = np.array([0b1011, 0], dtype=np.uint64)
    b = np.array([0b0110, 2 ** 64 - 1], dtype=np.uint64)
    assert hamming(a, b).tolist() == [3, 64]


def test_brightness_and_contrast_leave_the_hash_almost_unchanged():
    image = natural_images.original(1)
    washed = Image.fromarray(np.clip(np.asarray(image) * 0.7 + 50, 0, 255).astype(np.uint8))
    assert hamming(*hashes_of([image, washed])) <= 2


@pytest.mark.parametrize("kind, median_at_most, worst_at_most", [
    ("JPEG q=50", 0, 2), ("resize 0.6", 0, 4), ("shift 2 px", 6, 10), ("crop 5%", 6, 10),
    ("shift 2 px + JPEG q=70", 4, 8)])
def test_copies_of_scenes_stay_within_a_few_bits(scene_hashes, kind, median_at_most,
                                                 worst_at_most):
    copies = hashes_of([natural_images.copies(seed)[kind] for seed in range(SCENES)])
    bits = hamming(copies, scene_hashes)
    assert np.median(bits) <= median_at_most and bits.max() <= worst_at_most
    assert np.mean(bits <= 8) >= 0.9


def test_distinct_scenes_are_far_apart(scene_hashes):
    nearest = nearest_distances(scene_hashes, np.arange(SCENES))
    assert nearest.min() >= 14 and np.median(nearest) >= 18


def test_a_shift_of_a_tenth_of_a_small_image_is_beyond_reach():
    small = [natural_images.original(seed).resize((32, 32), Image.Resampling.BOX)
             for seed in range(10)]
    moved = [Image.new("RGB", (32, 32)) for _ in small]
    for image, target in zip(small, moved):
        target.paste(image, (3, 0))
    assert np.median(hamming(hashes_of(moved), hashes_of(small))) > 8


@pytest.mark.parametrize("n, radius", [(300, 0), (400, 1), (500, 3), (600, 8), (300, 12)])
def test_pair_search_finds_exactly_the_brute_force_pairs(n, radius):
    hashes = clustered_hashes(n, seed=n + radius)
    expected = brute_force_pairs(hashes, radius)
    found = pairs_within_radius(hashes, radius)
    assert len(expected) > 0 and np.array_equal(found, expected)


def test_pair_search_on_equal_hashes_and_tiny_inputs():
    hashes = np.array([5, 5, 10, 5], dtype=np.uint64)      # 5 ^ 10 = 0b1111
    assert pairs_within_radius(hashes, 0).tolist() == [[0, 1], [0, 3], [1, 3]]
    assert pairs_within_radius(hashes, 3).tolist() == [[0, 1], [0, 3], [1, 3]]
    assert pairs_within_radius(hashes, 4).shape == (6, 2)
    assert pairs_within_radius(hashes[:1], 8).shape == (0, 2)


@pytest.mark.parametrize("n, radius", [(10, 0), (1000, 4), (100_000, 8), (1_000_000, 8),
                                       (1_000_000, 12)])
def test_band_layout_keeps_the_pigeonhole_promise(n, radius):
    layout = band_layout(n, radius)
    assert sum(width for _, width, _ in layout) == HASH_BITS
    assert [shift for shift, _, _ in layout] == list(np.cumsum([0] + [w for _, w, _ in layout])[:-1])
    assert sum(flips + 1 for _, _, flips in layout) > radius
    assert all(flips >= 0 for _, _, flips in layout)


def test_a_million_hashes_within_8_bits_use_three_bands_of_21_or_22_bits():
    assert [(width, flips) for _, width, flips in band_layout(1_000_000, 8)] == \
        [(22, 2), (21, 2), (21, 2)]


def test_flip_masks_are_every_mask_with_few_bits():
    masks = flip_masks(5, 2)
    assert len(set(masks.tolist())) == len(masks) == 1 + 5 + math.comb(5, 2)
    assert masks.max() < 32 and hamming(masks, np.uint64(0)).max() == 2


def test_nearest_distances_match_brute_force():
    hashes = clustered_hashes(200, seed=4)
    bits = hamming(hashes[:, None], hashes[None, :])
    np.fill_diagonal(bits, HASH_BITS + 1)
    rows = np.array([0, 5, 77, 199])
    assert nearest_distances(hashes, rows).tolist() == bits[rows].min(axis=1).tolist()
