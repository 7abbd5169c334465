"""More like this (issue 10, item 4): a run keeps its kNN graph, and the samples most like one
sample or a selection come back nearest first, from a real audit on real images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from audit.ingest import ingest
from audit.plan import run_audit
from audit.store.neighbours import more_like_this, write_neighbours


def _three_colours(root, per_colour: int = 8):
    """Three tight groups of images: reds, greens and blues, with a little shading each."""
    for name, channel in (("red", 0), ("green", 1), ("blue", 2)):
        (root / name).mkdir(parents=True)
        for i in range(per_colour):
            pixels = np.full((16, 16, 3), 20 + i, dtype=np.uint8)
            pixels[..., channel] = 200 + i * 5
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_more_like_this_after_a_real_audit_stays_in_the_group(store, settings, tmp_path):
    dataset_id = ingest(store, _three_colours(tmp_path / "colours"), settings, name="colours")
    run_id = run_audit(store, settings, dataset_id,
                       {"detectors": ["outlier"], "embedder": "pixels", "k": 5, "folds": 2,
                        "device": "cpu", "loader_workers": 0})
    similar = more_like_this(store, run_id, ["red/0.png"], limit=7)
    assert len(similar) >= 5                         # k = 5 neighbours, then theirs
    assert all(s.startswith("red/") for s in similar) and "red/0.png" not in similar
    both = more_like_this(store, run_id, ["red/0.png", "blue/0.png"], limit=14)
    assert {s.split("/")[0] for s in both} == {"red", "blue"}


def test_neighbours_first_then_their_neighbours_each_once(store, settings, tmp_path):
    ids = ["a", "b", "c", "d", "e"]
    indices = np.array([[1, 2], [2, 3], [3, 4], [4, 0], [0, 1]])
    write_neighbours(store, 1, ids, indices, np.zeros((5, 2)))
    assert more_like_this(store, 1, ["a"]) == ["b", "c", "d", "e"]   # b, c; then c's d, e
    assert more_like_this(store, 1, ["a"], limit=2) == ["b", "c"]
    assert more_like_this(store, 2, ["a"]) == []                      # no graph for that run
