"""A rerun that starts from the reviewed state (issue 11, item 1), on real images, a real store
and the real detectors: relabels become the labels, removed samples leave the probe's and the
heads' training, kept samples are trusted, and the run records which decisions it used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.cli import _config_overrides, build_parser
from audit.corrections import reviewed_corrections
from audit.ingest import ingest
from audit.detectors.training_dynamics import HeadConfig, training_dynamics
from audit.plan import run_audit
from audit.probe import cross_fit_probe
from audit.store import runs
from audit.store.flags import Decision, record_decisions
from tests.audit.test_plan import FLIPPED, write_dataset

# r03 and r11 are red squares labelled blue, b07 a blue square labelled red.
RELABELLED, KEPT, REMOVED = FLIPPED
LABEL_CHECKS = ["label_issue", "knn_label", "training_dynamics", "overall"]


@pytest.fixture
def dataset_id(store, settings, tmp_path) -> int:
    return ingest(store, write_dataset(tmp_path / "colours", n_each=20), settings, name="colours")


def audit(store, settings, dataset_id: int, use_decisions: bool) -> int:
    return run_audit(store, settings, dataset_id,
                     {"detectors": LABEL_CHECKS, "embedder": "pixels", "k": 5, "folds": 4,
                      "probe": "logistic", "seeds": 2, "loader_workers": 0,
                      "params": {"training_dynamics": {"epochs": 4}},
                      "use_decisions": use_decisions})


def flagged(store, run_id: int, detector: str) -> set[str]:
    scores = runs.scores_frame(store, run_id)
    mine = scores[scores["detector"] == detector]
    return set(mine.loc[mine["is_issue"], "sample_id"])


def test_a_relabel_changes_the_next_runs_labels_and_the_run_records_its_decisions(
        store, settings, dataset_id):
    first = audit(store, settings, dataset_id, use_decisions=True)     # no decisions yet
    assert set(FLIPPED) <= flagged(store, first, "label_issue")
    assert json.loads(runs.get_run(store, first)["summary"])["decisions"]["through_id"] is None

    record_decisions(store, dataset_id, [Decision(RELABELLED, "relabel", "red"),
                                         Decision(KEPT, "keep"), Decision(REMOVED, "remove")])
    corrected = audit(store, settings, dataset_id, use_decisions=True)
    as_ingested = audit(store, settings, dataset_id, use_decisions=False)

    audited = runs.run_samples_frame(store, corrected).set_index("sample_id")["audited_label"]
    assert audited[RELABELLED] == "red" and audited[KEPT] == "blue"
    plain = runs.run_samples_frame(store, as_ingested).set_index("sample_id")["audited_label"]
    assert plain[RELABELLED] == "blue"
    for detector in ("label_issue", "overall"):
        assert RELABELLED not in flagged(store, corrected, detector)
        assert RELABELLED in flagged(store, as_ingested, detector)
        assert KEPT not in flagged(store, corrected, detector)          # trusted
        assert KEPT in flagged(store, as_ingested, detector)

    scores = runs.scores_frame(store, corrected)
    kept = scores[(scores["sample_id"] == KEPT) & (scores["detector"] == "label_issue")].iloc[0]
    assert kept["score"] < 0.5                     # still measured as it is, only not counted
    assert json.loads(kept["details"])["trusted"] is True

    run = runs.get_run(store, corrected)
    used = json.loads(run["summary"])["decisions"]
    assert used == {"through_id": used["through_id"], "relabelled": 1, "removed": 1, "kept": 1}
    assert "1 relabels used as labels" in json.loads(run["notes"])["decisions"]
    assert json.loads(run["config"])["use_decisions"] is True
    assert "decisions" not in json.loads(runs.get_run(store, as_ingested)["summary"])

    # The log is append-only: what the run used can be read back after later decisions.
    record_decisions(store, dataset_id, [Decision(RELABELLED, "undo")])
    assert reviewed_corrections(store, dataset_id).relabels == {}
    then = reviewed_corrections(store, dataset_id, through_id=used["through_id"])
    assert then.relabels == {RELABELLED: "red"} and then.removed == {REMOVED}
    assert then.trusted == {KEPT}


def test_removed_samples_do_not_teach_the_probe():
    """Two clusters; 15 of cluster A's 50 rows labelled B. Trained on, they pull the probe's
    P(B) on A's other rows up; removed, they do not."""
    rng = np.random.default_rng(0)
    centres = np.zeros((2, 8))
    centres[0, 0], centres[1, 0] = 1.5, -1.5
    x = np.concatenate([centres[0] + rng.normal(0, 1, (50, 8)),
                        centres[1] + rng.normal(0, 1, (50, 8))]).astype(np.float32)
    labels = np.array([0] * 50 + [1] * 50)
    wrong = np.arange(15)
    labels[wrong] = 1
    clean_a = np.arange(15, 50)
    trainable = np.ones(100, dtype=bool)
    trainable[wrong] = False

    taught = cross_fit_probe(x, labels, 2, folds=5, seed=0, kind="logistic").pred_probs
    spared = cross_fit_probe(x, labels, 2, folds=5, seed=0, kind="logistic",
                             trainable=trainable).pred_probs
    assert spared[clean_a, 1].mean() < taught[clean_a, 1].mean() - 0.1
    assert spared[wrong, 0].mean() > 0.5           # the removed rows are still predicted


def test_removed_samples_labels_do_not_change_the_heads():
    """The heads never train on a removed row nor use it as a threshold sample, so whatever
    label it carries, every other row's AUM and EL2N are the same."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (120, 6)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64)
    trainable = np.ones(120, dtype=bool)
    trainable[:20] = False
    flipped = labels.copy()
    flipped[:20] = 1 - flipped[:20]
    config = HeadConfig(epochs=4, early_epoch=2)
    one, other = (training_dynamics(x, given, 2, 2, config, 50.0, seed=0, trainable=trainable)
                  for given in (labels, flipped))
    np.testing.assert_allclose(one.aum[20:], other.aum[20:], rtol=1e-5)
    np.testing.assert_allclose(one.el2n[20:], other.el2n[20:], rtol=1e-5)
    assert one.aum_threshold == pytest.approx(other.aum_threshold)
    # the removed rows are still measured after each epoch, each under the label it carries
    assert np.all(one.aum[:20] != 0) and not np.allclose(one.aum[:20], other.aum[:20])
    every = training_dynamics(x, flipped, 2, 2, config, 50.0, seed=0)
    assert not np.allclose(every.aum[20:], other.aum[20:], rtol=1e-5)   # trained on: differs


def test_the_cli_asks_for_the_reviewed_state_only_with_its_flag():
    parser = build_parser()
    assert _config_overrides(parser.parse_args(["run", "pets", "--with-decisions"])) == {
        "use_decisions": True}
    assert "use_decisions" not in _config_overrides(parser.parse_args(["run", "pets"]))
