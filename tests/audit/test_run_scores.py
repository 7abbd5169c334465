"""``audit.store.run_scores``: a run's results in the shapes its tables store, written to and
read back from a real store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.detectors.base import DetectorInputs
from audit.store.run_scores import run_sample_frame, scores_for_store
from audit.store.runs import (create_run, run_samples_frame, scores_frame, write_run_samples,
                              write_scores)
from tests.audit.test_export_support import ingest_small


@pytest.fixture
def run_id(store, settings, tmp_path) -> int:
    return create_run(store, ingest_small(store, settings, tmp_path / "src", n=3), {})


def _inputs(pred_probs: np.ndarray | None) -> DetectorInputs:
    return DetectorInputs(sample_ids=["s00", "s01", "s02"], labels=np.array([0, 1, 0]),
                          class_names=["cat", "dog"], splits=np.array(["train"] * 3),
                          sha256=["a", "b", "c"], widths=np.full(3, 8), heights=np.full(3, 8),
                          pred_probs=pred_probs)


def test_numpy_details_are_stored_as_json(store, run_id) -> None:
    frame = pd.DataFrame({"sample_id": ["s00", "s01"], "score": [0.25, 1.0],
                          "is_issue": [True, False],
                          "details": [{"neighbours": np.array([1, 2]), "share": np.float32(0.5)},
                                      None]})
    write_scores(store, run_id, scores_for_store("outlier", frame))
    stored = scores_frame(store, run_id).set_index("sample_id")
    assert json.loads(stored.loc["s00", "details"]) == {"neighbours": [1, 2], "share": 0.5}
    assert pd.isna(stored.loc["s01", "details"]) and stored["detector"].tolist() == ["outlier"] * 2


def test_details_that_are_not_json_data_are_refused() -> None:
    frame = pd.DataFrame({"sample_id": ["s00"], "score": [0.5], "is_issue": [False],
                          "details": [{"when": object()}]})
    with pytest.raises(TypeError, match="details value of type object is not JSON data"):
        scores_for_store("outlier", frame)


def test_run_samples_without_probs_or_map_are_stored_as_null(store, run_id) -> None:
    write_run_samples(store, run_id, run_sample_frame(_inputs(None), None, np.full((3, 2), np.nan)))
    stored = run_samples_frame(store, run_id)
    assert stored["audited_label"].tolist() == ["cat", "dog", "cat"]
    assert stored[["fold", "predicted_label", "map_x"]].isna().all().all()


def test_run_samples_carry_the_probe_prediction_and_folds(store, run_id) -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    frame = run_sample_frame(_inputs(probs), np.array([0, 1, 2]), np.arange(6.0).reshape(3, 2))
    write_run_samples(store, run_id, frame)
    stored = run_samples_frame(store, run_id)
    assert stored["predicted_label"].tolist() == ["cat", "dog", "dog"]
    assert stored["predicted_confidence"].tolist() == [0.9, 0.7, 0.6]
    assert stored["fold"].tolist() == [0, 1, 2] and stored["map_y"].tolist() == [1.0, 3.0, 5.0]
