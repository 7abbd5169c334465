"""near_duplicate: file-hash, perceptual-hash and embedding duplicates, sets, leakage."""

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from audit.detectors import REGISTRY
from audit.detectors.near_duplicate import (calibrated_radius, duplicate_scores, duplicate_sets,
                                            hash_pairs, leaking_sets, near_pairs, pair_table)
from audit.embedders import l2_normalise
from audit.embedders.pixels import pixel_pca
from audit.images import load_rgb
from tests.audit import natural_images
from tests.audit.detector_inputs import blobs, make_inputs, quiet


def test_hash_pairs_link_equal_hashes_and_skip_missing():
    pairs = hash_pairs(["a", "b", "a", None, None, "a"])
    assert pairs.tolist() == [[2, 0], [5, 0]]


def test_sets_are_connected_components_and_singletons_get_minus_one():
    set_id = duplicate_sets(6, np.array([[0, 2], [2, 5], [3, 4]]))
    assert set_id.tolist() == [0, -1, 0, 1, 1, 0]


def test_leak_needs_train_and_another_split_in_one_set():
    set_id = np.array([0, 0, 1, 1, -1])
    splits = np.array(["train", "test", "train", "train", "test"])
    assert leaking_sets(set_id, splits) == {0}


def test_near_pairs_use_a_fraction_of_the_median_nearest_distance():
    indices = np.array([[1], [0], [3], [2]])
    distances = np.array([[0.01], [0.01], [0.4], [0.5]])
    assert near_pairs(indices, distances, 0.13).tolist() == [[0, 1], [1, 0]]


def test_planted_copies_and_identical_files_form_sets_with_leaks():
    points, labels = blobs(per_class=40, classes=3, dim=16, spread=0.5)
    rng = np.random.default_rng(3)
    copies = l2_normalise(points[[5, 50]] + 1e-4 * rng.normal(size=(2, 16)))
    x = np.concatenate([points, copies]).astype(np.float32)
    n = len(x)
    splits = np.array(["train"] * n)
    splits[n - 1] = "test"
    sha = [f"h{i}" for i in range(n)]
    sha[100] = sha[7]
    inputs = make_inputs(np.concatenate([labels, labels[[5, 50]]]), x, splits=splits, sha256=sha)
    frame = REGISTRY["near_duplicate"]().run(inputs, {}, quiet)
    assert set(np.flatnonzero(frame["is_issue"])) == {5, 50, 7, 100, n - 2, n - 1}
    copy_of_50 = frame.iloc[n - 1]["details"]
    assert copy_of_50["duplicate_of"] == ["s050"] and copy_of_50["leak"] is True
    assert frame.iloc[5]["details"]["leak"] is False
    assert frame.iloc[7]["score"] == 0.0 and "identical file" in frame.iloc[7]["details"]["reason"]
    scores, flagged = frame["score"], frame["is_issue"]
    assert scores[~flagged].min() > scores[flagged].max()


# --- perceptual hashes on real image files -------------------------------------------------

SCENES = 60
PLANTED = {          # copy kind -> (scene it copies, split of the copy); every scene is train
    "shift 2 px": (3, "train"), "crop 5%": (7, "test"), "JPEG q=50": (11, "test"),
    "resize 0.6": (15, "train"), "shift 2 px + JPEG q=70": (19, "val")}


def image_dataset(folder: Path, with_embeddings: bool, broken: bool = False):
    """Scenes and their planted copies written as PNG/JPEG files, as DetectorInputs."""
    images = [natural_images.original(seed) for seed in range(SCENES)]
    splits = ["train"] * SCENES
    for kind, (seed, split) in PLANTED.items():
        images.append(natural_images.copies(seed)[kind])
        splits.append(split)
    paths = [_write(folder, i, image, "jpg" if "JPEG" in kind_of(i) else "png")
             for i, image in enumerate(images)]
    if broken:
        paths.append(folder / "broken.png")
        paths[-1].write_text("not an image")
        splits.append("train")
    return _inputs(paths, np.array(splits), with_embeddings)


def kind_of(row: int) -> str:
    return list(PLANTED)[row - SCENES] if row >= SCENES else "scene"


def _write(folder: Path, row: int, image: Image.Image, suffix: str) -> Path:
    path = folder / f"{row:03d}.{suffix}"
    image.save(path, quality=95) if suffix == "jpg" else image.save(path)
    return path


def _inputs(paths: list[Path], splits: np.ndarray, with_embeddings: bool):
    n = len(paths)
    load = lambda row: load_rgb(paths[row], 10 ** 8)  # noqa: E731
    extra = {"splits": splits, "sha256": [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths],
             "load_image": load}
    if not with_embeddings:
        return make_inputs(np.zeros(n, dtype=np.int64), **extra)
    thumbs = np.stack([np.asarray(load(r).resize((32, 32), Image.Resampling.BOX)) for r in range(n)])
    return make_inputs(np.zeros(n, dtype=np.int64), pixel_pca(thumbs), **extra)


def planted_rows() -> set[int]:
    return {seed for seed, _ in PLANTED.values()} | set(range(SCENES, SCENES + len(PLANTED)))


def test_calibrated_radius_is_capped_and_shrinks_for_crowded_hashes():
    photos = np.array([16, 18, 20, 20, 22] * 20)
    digits = np.array([2, 4, 6, 8, 10, 10, 10, 10, 12, 12] * 10)
    assert calibrated_radius(photos, 8, 3.0) == 8
    assert calibrated_radius(digits, 8, 3.0) == 1          # 10 - 3 * 1.4826 * 2
    assert calibrated_radius(digits[:40], 8, 3.0) == 8      # too few rows to calibrate


def test_duplicate_scores_rank_hash_pairs_below_the_embedding_edge():
    none = np.empty((0, 2), dtype=np.int64)
    pairs = pair_table(np.array([[2, 3]]), np.array([[0, 1]]), np.array([2]), none, none)
    score = duplicate_scores(np.full(5, 0.5), pairs, radius=6, threshold=0.13)
    cut = 1 - np.exp(-0.13)
    assert np.allclose(score, [cut * 3 / 8, cut * 3 / 8, 0.0, 0.0, 0.5])


def test_shifted_cropped_and_reencoded_copies_are_found_with_their_leaks(tmp_path):
    inputs = image_dataset(tmp_path, with_embeddings=True)
    frame = REGISTRY["near_duplicate"]().run(inputs, {}, quiet)
    assert set(np.flatnonzero(frame["is_issue"])) == planted_rows()
    for row, (kind, (seed, split)) in enumerate(PLANTED.items(), start=SCENES):
        detail = frame.iloc[row]["details"]
        assert detail["duplicate_of"] == [f"s{seed:03d}"], kind
        assert "perceptual hash" in detail["found_by"] and detail["hash_bits"] <= 8, kind
        assert detail["leak"] is (split != "train"), kind
        assert frame.iloc[seed]["details"]["leak"] is (split != "train"), kind
    scores, flagged = frame["score"], frame["is_issue"]
    assert scores[~flagged].min() > scores[flagged].max()


def test_pixels_alone_find_the_copies_and_skip_an_unreadable_image(tmp_path):
    inputs = image_dataset(tmp_path, with_embeddings=False, broken=True)
    detector = REGISTRY["near_duplicate"]()
    assert inputs.knn is None and detector.missing_requirements(inputs) is None
    frame = detector.run(inputs, {}, quiet)
    assert set(np.flatnonzero(frame["is_issue"])) == planted_rows()
    assert frame.iloc[-1]["is_issue"] == False and frame.iloc[-1]["score"] == 1.0  # noqa: E712
    found = frame[frame["is_issue"]]["details"]
    assert all("perceptual hash" in d["found_by"] and "embedding" not in d["found_by"]
               for d in found)
    assert frame.loc[frame["is_issue"], "score"].max() < 1 - np.exp(-0.13)


def test_without_pixels_or_neighbours_the_detector_says_what_it_needs():
    inputs = make_inputs(np.array([0, 1, 0]))
    assert "kNN graph or the pixels" in REGISTRY["near_duplicate"]().missing_requirements(inputs)


def test_distinct_handwritten_digits_are_not_paired_by_their_hashes():
    """Low-detail images collide: 8 x 8 digits drawn at 32 px sit 2-10 bits from another
    digit. The calibrated radius keeps them apart; the plain 8-bit cap would not. The pixel
    content rule pairs only sklearn's own nearly identical pair (its 8 x 8 images differ by 16
    grey levels in all, out of 64 pixels x 16 levels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.flatnonzero(digits.target <= 1)
    images = [Image.fromarray((255 - digits.images[r] * 15).astype(np.uint8)).convert("RGB")
              .resize((32, 32), Image.Resampling.BICUBIC) for r in rows]
    inputs = make_inputs(np.zeros(len(rows), dtype=np.int64), load_image=lambda r: images[r])
    detector = REGISTRY["near_duplicate"]()
    flagged = np.flatnonzero(detector.run(inputs, {}, quiet)["is_issue"])
    assert len(flagged) == 2
    assert np.abs(digits.images[rows[flagged[0]]] - digits.images[rows[flagged[1]]]).sum() <= 16
    uncalibrated = detector.run(inputs, {"hash_z": 0.0}, quiet)
    assert uncalibrated["is_issue"].sum() > 50
