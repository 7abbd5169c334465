"""Perceptual hashes of images and the pairs of hashes within a Hamming radius.

pHash (Zauner 2010; the ``imagehash`` package's variant keeps the DC term and measured the
same here): the grey image shrunk to 32 x 32 by area averaging, its 2-D DCT, the 64 lowest
AC frequencies in zig-zag order (the DC term, the mean brightness, left out), each compared
with their median -> 64 bits. Brightness and contrast changes, re-encoding, resizing and small
shifts or crops move a few of those bits; a different picture moves about half of them.

Measured with 300 copies per cell (scenes: ``tests/audit/natural_images.py``; CIFAR-10N's
images, upscaled x4 and as they are; sklearn's digits drawn as in the demo). Bits apart,
median/95th percentile and the share within 8 (pHash distances are even):

    copy           scenes 128 px   CIFAR x4 128 px   CIFAR 32 px    digits 32 px
    JPEG q=90      0/2   100%      0/2   100%        0/2   100%     0/2   100%
    JPEG q=50      0/2   100%      0/2   100%        1/4   100%     2/4   100%
    resize 0.5x    0/2   100%      0/2   100%        0/2   100%     0/2   100%
    resize 1.5x    0/2   100%      0/2   100%        2/4   100%     4/8    99%
    shift 2 px     6/10   95%      4/10   90%        18/28   1%     20/28   0%
    shift 4 px     10/16  44%      10/16  42%        32/40   0%     30/40   0%
    crop 5%        8/12   70%      8/12   69%        12/18  25%     12/20  15%
    crop 10%       14/22   8%      14/22  12%        16/24   9%     16/24   5%
    demo re-scan                                                    4/8    99%

    distinct images (n)            nearest other: 1st pct / median   pairs within 6 / 8 bits
    scenes 128 px (300)            16 / 20                           0 / 0
    photo tiles 96 px (248)        16 / 20                           0 / 0
    CIFAR-10 32 px (10,000)        10 / 16                           26 / 47 (22 of the 26
                                                                     are CIFAR's own copies)
    sklearn digits 32 px (1,797)    2 / 10                           436 / 1,524

So a shift or crop is a few percent of the picture, not a few pixels: 2 px of a 128 px image
is found, 2 px of a 32 px one is not. The radius is therefore capped at 8 bits (JPEG, resize,
2-px shifts on >= 96 px images, most 5% crops) and lowered per dataset by the detector
(``audit.detectors.near_duplicate.calibrated_radius``), because distinct low-detail images
collide: at 8 bits the demo digits would pair up 1,524 times.

``pairs_within_radius`` finds every pair of hashes at Hamming distance <= r without comparing
all pairs: a multi-index (Norouzi et al. 2012, with the generalised pigeonhole rule of Qin et
al. 2018). The 64 bits are cut into ``m`` bands; two hashes within ``r`` differ in at least
one band by at most its share ``t_i`` of ``r - m + 1``, so each hash looks up the hashes whose
band equals its own band with up to ``t_i`` bits flipped, and only those candidates are
verified with a popcount. The split (``band_layout``) minimises look-ups plus expected
candidates: three bands of 21-22 bits at 1M hashes. On uniform random hashes, 1M within 8 bits
took 22 s on one busy core (10 s within 6), 100k within 8 bits 0.5 s.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_BITS = 64
THUMB = 32
LOW = 8
MAX_BAND_BITS = 24
CANDIDATE_CHUNK = 4_000_000


# --- hashing -------------------------------------------------------------------------------

def grey_thumbnail(image: Image.Image) -> np.ndarray:
    """The image as a (THUMB, THUMB) float32 grey array, shrunk by area averaging."""
    return np.asarray(image.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX),
                      dtype=np.float32)


def low_frequencies(thumbs: np.ndarray) -> np.ndarray:
    """(B, 64) lowest-frequency AC terms of the DCT of (B, THUMB, THUMB) grey thumbnails, in
    zig-zag order (the DC term, the mean brightness, left out)."""
    coefficients = dctn(thumbs.astype(np.float64), axes=(1, 2), norm="ortho")
    rows, cols = _zigzag_positions()
    return coefficients[:, rows, cols]


def content_frequencies(thumbs: np.ndarray, dc_weight: float = 0.1) -> np.ndarray:
    """(B, 65): the DC term (mean brightness) times ``dc_weight``, then the 64 terms of
    ``low_frequencies``. The direction of this vector describes the picture; the small DC
    weight lets brightness against contrast count a little (a re-coloured copy is not a copy)
    without letting the mean brightness, much larger than the rest, swamp the pattern."""
    coefficients = dctn(thumbs.astype(np.float64), axes=(1, 2), norm="ortho")
    rows, cols = _zigzag_positions(with_dc=True)
    chosen = coefficients[:, rows, cols]
    chosen[:, 0] *= dc_weight
    return chosen


def _zigzag_positions(with_dc: bool = False) -> tuple[np.ndarray, np.ndarray]:
    cells = sorted(itertools.product(range(LOW + 1), repeat=2), key=lambda rc: (sum(rc), rc[0]))
    chosen = cells[0 if with_dc else 1:HASH_BITS + 1]
    return np.array([r for r, _ in chosen]), np.array([c for _, c in chosen])


def phash(thumbs: np.ndarray) -> np.ndarray:
    """uint64 pHash of each (B, THUMB, THUMB) grey thumbnail."""
    return phash_of_low(low_frequencies(thumbs))


def phash_of_low(low: np.ndarray) -> np.ndarray:
    """uint64 pHash from (B, 64) low frequencies: each compared with its row's median."""
    return pack_bits(low > np.median(low, axis=1, keepdims=True))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(B, 64) booleans -> (B,) uint64, first column the most significant bit."""
    packed = np.ascontiguousarray(np.packbits(np.asarray(bits, dtype=bool), axis=1))
    return packed.view(">u8").astype(np.uint64).reshape(len(bits))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


# --- pairs within a Hamming radius ---------------------------------------------------------

def pairs_within_radius(hashes: np.ndarray, radius: int) -> np.ndarray:
    """(m, 2) int64 rows ``i < j`` whose uint64 hashes differ in at most ``radius`` bits,
    sorted; the multi-index keeps the work near-linear in n for small radii."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) < 2 or radius < 0:
        return np.empty((0, 2), dtype=np.int64)
    found = [_band_pairs(hashes, band, radius) for band in band_layout(len(hashes), radius)]
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // len(hashes), codes % len(hashes)], axis=1)


def band_layout(n: int, radius: int) -> list[tuple[int, int, int]]:
    """(shift, width, flips) of each band: the cheapest split of the 64 bits into at most
    ``radius + 1`` bands, each searched with up to ``flips`` of its bits changed."""
    layouts = [_layout(count, radius) for count in range(1, min(radius + 1, HASH_BITS) + 1)]
    return min(layouts, key=lambda layout: _search_cost(n, layout))


def _layout(count: int, radius: int) -> list[tuple[int, int, int]]:
    widths = [HASH_BITS // count + (i < HASH_BITS % count) for i in range(count)]
    spare = radius - count + 1          # generalised pigeonhole: sum of (flips + 1) > radius
    flips = [spare // count + (i < spare % count) for i in range(count)]
    shifts = np.cumsum([0] + widths[:-1])
    return [(int(s), w, f) for s, w, f in zip(shifts, widths, flips)]


def _search_cost(n: int, layout: list[tuple[int, int, int]]) -> float:
    """Look-ups plus expected candidates per hash, for hashes spread evenly."""
    return sum(_probe_count(width, flips) * (1.0 + n / 2.0 ** width)
               for _, width, flips in layout)


def _probe_count(width: int, flips: int) -> int:
    return sum(math.comb(width, k) for k in range(flips + 1))


def flip_masks(width: int, flips: int) -> np.ndarray:
    """Every uint64 mask of ``width`` bits with at most ``flips`` bits set."""
    masks = [sum(1 << b for b in bits) for k in range(flips + 1)
             for bits in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.uint64)


def _band_pairs(hashes: np.ndarray, band: tuple[int, int, int], radius: int) -> np.ndarray:
    """Codes ``i * n + j`` of the verified pairs that one band proposes."""
    shift, width, flips = band
    values = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
    index = BandIndex(values, width)
    found = [_probe(hashes, index, values ^ mask, radius) for mask in flip_masks(width, flips)]
    return np.concatenate(found)


class BandIndex:
    """The rows sorted by one band's value, and where each value's run of rows starts: a
    direct table for narrow bands, binary search for wide ones."""

    def __init__(self, values: np.ndarray, width: int):
        self.order = np.argsort(values, kind="stable")
        self.ordered = values[self.order]
        self.table = None
        if width <= MAX_BAND_BITS:
            counts = np.bincount(values.astype(np.int64), minlength=1 << width)
            self.table = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def runs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, count) of the rows whose band value equals each key."""
        if self.table is not None:
            slots = keys.astype(np.int64)
            start = self.table[slots]
            return start, self.table[slots + 1] - start
        start = np.searchsorted(self.ordered, keys, side="left")
        return start, np.searchsorted(self.ordered, keys, side="right") - start


def _probe(hashes: np.ndarray, index: BandIndex, keys: np.ndarray, radius: int) -> np.ndarray:
    """Verified pair codes between every hash and the hashes whose band value is its key."""
    low, counts = index.runs(keys)
    queries = np.flatnonzero(counts)
    pieces = [_verify(hashes, index.order, low, counts, chunk, radius)
              for chunk in _chunks(queries, counts)]
    return np.concatenate(pieces or [np.empty(0, np.int64)])


def _chunks(queries: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Queries cut so that each piece expands to at most about CANDIDATE_CHUNK candidates."""
    total = np.cumsum(counts[queries])
    cuts = np.searchsorted(total, np.arange(CANDIDATE_CHUNK, total[-1] if len(total) else 0,
                                            CANDIDATE_CHUNK))
    return np.split(queries, cuts)


def _verify(hashes, order, low, counts, queries, radius) -> np.ndarray:
    """Expand each query into its run of candidates and keep ``i < j`` within ``radius``."""
    repeats = counts[queries]
    query = np.repeat(queries, repeats)
    starts = np.repeat(low[queries] - (np.cumsum(repeats) - repeats), repeats)
    other = order[starts + np.arange(len(query))]
    keep = (query < other) & (hamming(hashes[query], hashes[other]) <= radius)
    return query[keep].astype(np.int64) * len(hashes) + other[keep]


def nearest_distances(hashes: np.ndarray, rows: np.ndarray, block: int = 8) -> np.ndarray:
    """Hamming distance from each of ``rows`` to its nearest other hash (65 when alone)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    nearest = np.full(len(rows), HASH_BITS + 1, dtype=np.int64)
    for start in range(0, len(rows), block):
        chosen = rows[start:start + block]
        bits = np.bitwise_count(hashes[chosen, None] ^ hashes[None, :]).astype(np.int64)
        bits[np.arange(len(chosen)), chosen] = HASH_BITS + 1
        nearest[start:start + block] = bits.min(axis=1, initial=HASH_BITS + 1)
    return nearest
