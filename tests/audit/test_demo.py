"""The demo dataset: deterministic, planted problems recorded apart from the store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from audit.demo import CLASS_NAMES, ensure_demo_dataset, generate_demo
from audit.store.datasets import samples_frame


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", seed=3)
    generate_demo(tmp_path / "b", seed=3)
    generate_demo(tmp_path / "c", seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_ingested_demo_matches_its_truth(store, settings) -> None:
    dataset_id = ensure_demo_dataset(store, settings, seed=0)
    assert ensure_demo_dataset(store, settings, seed=0) == dataset_id  # reused, not duplicated
    truth = json.loads((settings.demo_dir / "truth.json").read_text())
    frame = samples_frame(store, dataset_id).set_index("sample_id")
    assert len(frame) == 1797 + len(truth["near_duplicate"]) + len(truth["outlier"]) + 2
    assert 80 <= len(truth["label_flip"]) <= 100            # about 5%
    assert 15 <= len(truth["outlier"]) <= 21                # about 1%
    assert 1 <= len(truth["leak"]) < len(truth["near_duplicate"])
    assert sorted(frame.index[frame["load_error"].notna()]) == sorted(truth["unreadable"])
    for sample_id, flip in truth["label_flip"].items():
        assert frame.loc[sample_id, "label"] == flip["given_label"] != flip["true_label"]
    for a, b in truth["leak"]:
        assert frame.loc[a, "split"] != frame.loc[b, "split"]
    assert (frame.loc[truth["quality"]["tiny"], "width"] == 8).all()
    assert set(frame["label"]) == set(CLASS_NAMES)
    assert set(frame["split"]) == {"train", "test"}
    with_truth = {c for c in frame.columns if "true" in c}
    assert not with_truth  # the truth never enters the store
