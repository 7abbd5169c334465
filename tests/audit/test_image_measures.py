"""Every image's measures from one decode, shared by image_quality and near_duplicate, and the
local executor's ``map_rows`` that runs them batch by batch. Real PNG files written here."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from audit import image_measures, perceptual_hash
from audit.detectors import REGISTRY
from audit.errors import Cancelled
from audit.executors import LocalExecutor
from audit.images import load_rgb
from tests.audit.detector_inputs import make_inputs, quiet

IMAGES = 30


@pytest.fixture
def folder(tmp_path):
    """30 noisy colour images (one saved twice) and a file that is not an image."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(IMAGES):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    (tmp_path / "07.png").write_bytes(paths[3].read_bytes())
    (tmp_path / "11.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return paths


class CountingLoader:
    """Decodes real files by row and counts how often each row was decoded."""

    def __init__(self, paths):
        self.paths, self.counts, self.lock = paths, np.zeros(len(paths), dtype=int), \
            threading.Lock()

    def __call__(self, row: int) -> Image.Image:
        with self.lock:
            self.counts[row] += 1
        return load_rgb(self.paths[row], 10**8)


def test_both_detectors_read_one_decode_of_each_image(folder, monkeypatch) -> None:
    """image_quality then near_duplicate: every image decoded exactly once (batches of 8), the
    unreadable one recorded by both, the copy paired."""
    monkeypatch.setattr(image_measures, "BATCH", 8)
    loader = CountingLoader(folder)
    inputs = make_inputs(np.zeros(IMAGES, dtype=np.int64), load_image=loader)
    quality = REGISTRY["image_quality"]().run(inputs, {}, quiet)
    duplicates = REGISTRY["near_duplicate"]().run(inputs, {}, quiet)
    assert loader.counts.tolist() == [1] * IMAGES
    assert quality.loc[11, "details"]["issues"] == ["unreadable"]
    assert quality["is_issue"].sum() == 1
    assert set(np.flatnonzero(duplicates["is_issue"])) == {3, 7}


def test_the_measures_are_those_of_each_image_alone(folder) -> None:
    """A batch's rows are each image's own: its pHash and quality measures computed on that
    image alone; the unreadable row has NaN measures, no hash and its reason."""
    load = CountingLoader(folder)
    measures = image_measures.measure_images(load, IMAGES, LocalExecutor(), quiet)
    assert measures.errors == {11: "not an image (unrecognised format)"}
    assert np.isnan(measures.quality["dark"][11]) and not measures.decoded[11]
    for row in (0, 5, 29):
        image = load_rgb(folder[row], 10**8)
        alone = perceptual_hash.phash(perceptual_hash.grey_thumbnail(image)[None])[0]
        assert measures.phash[row] == alone
        features = image_measures.pixel_features(image_measures.colour_thumbnail(image)[None])
        for name in image_measures.PIXEL_CHECKS:
            assert measures.quality[name][row] == pytest.approx(float(features[name][0]))


def test_without_a_readable_image_in_the_first_batch_the_rest_are_not_tried(tmp_path,
                                                                          monkeypatch) -> None:
    """A run whose files are not there (given embeddings, images elsewhere): the first batch
    of 8 is tried, the other 22 rows are not, and every row is unread, with its reason."""
    monkeypatch.setattr(image_measures, "BATCH", 8)
    loader = CountingLoader([tmp_path / f"absent_{i}.png" for i in range(IMAGES)])
    inputs = make_inputs(np.zeros(IMAGES, dtype=np.int64), load_image=loader)
    quality = REGISTRY["image_quality"]().run(inputs, {}, quiet)
    duplicates = REGISTRY["near_duplicate"]().run(inputs, {}, quiet)
    assert loader.counts.tolist() == [1] * 8 + [0] * (IMAGES - 8)
    assert quality["is_issue"].all() and not duplicates["is_issue"].any()
    assert quality.loc[0, "details"]["reason"] == "the image could not be read: file not found"
    assert quality.loc[8, "details"]["reason"] == ("the image could not be read: not read: none "
                                                   "of the first 8 images could be read (file "
                                                   "not found)")


def double(batch: dict, *, offset: int) -> dict:
    return {"twice": batch["value"] * 2 + offset, "label": batch["name"]}


def test_local_map_rows_keeps_row_order_and_stops_on_cancel() -> None:
    values = np.arange(10)
    names = np.array([f"r{v}" for v in values], dtype=object)
    seen = []
    out = LocalExecutor().map_rows(double, {"value": values, "name": names}, 3, {"offset": 1},
                                   lambda fraction, message: seen.append(message))
    assert out["twice"].tolist() == (values * 2 + 1).tolist()
    assert out["label"].tolist() == names.tolist()
    assert seen == ["rows: 3 of 10", "rows: 6 of 10", "rows: 9 of 10", "rows: 10 of 10"]
    empty = LocalExecutor().map_rows(double, {"value": values[:0], "name": names[:0]}, 3,
                                     {"offset": 1})
    assert len(empty["twice"]) == 0
    calls = []
    with pytest.raises(Cancelled):
        LocalExecutor(should_cancel=lambda: len(calls) >= 2).map_rows(
            lambda batch: calls.append(1) or {"x": batch["value"]}, {"value": values}, 3)
    assert len(calls) == 2
