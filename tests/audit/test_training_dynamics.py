"""training_dynamics: margins and EL2N on hand-made logits, AUM with threshold samples on blobs."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from audit.detectors import REGISTRY
from audit.detectors.training_dynamics import threshold_groups
from audit.detectors.training_heads import el2n, margins
from audit.errors import ConfigError
from tests.audit.detector_inputs import blobs, flip, make_inputs, precision_recall, quiet


def test_margin_is_assigned_logit_minus_largest_other():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    assert margins(logits, torch.tensor([0, 0])).tolist() == [1.0, -3.0]


def test_el2n_is_zero_for_a_certain_right_answer_and_sqrt2_for_a_certain_wrong_one():
    logits = torch.tensor([[50.0, 0.0], [0.0, 50.0]])
    assert np.allclose(el2n(logits, torch.tensor([0, 0])).numpy(), [0.0, np.sqrt(2)], atol=1e-6)


def test_threshold_groups_are_disjoint_and_sized_n_over_k_plus_one():
    groups = threshold_groups(100, 4, 3, seed=0)
    assert [len(g) for g in groups] == [20, 20, 20]
    assert len(set(np.concatenate(groups).tolist())) == 60


def test_planted_flips_have_the_smallest_area_under_the_margin():
    points, true = blobs(per_class=80, classes=3, dim=16, spread=0.6)
    noisy, flipped = flip(true, 12, 3)
    frame = REGISTRY["training_dynamics"]().run(make_inputs(noisy, points), {}, quiet)
    truth = np.isin(np.arange(len(noisy)), flipped)
    assert roc_auc_score(truth, -frame["score"]) > 0.97
    precision, recall = precision_recall(frame["is_issue"].to_numpy(), flipped)
    assert precision >= 0.7 and recall >= 0.8
    detail = frame.iloc[flipped[0]]["details"]
    assert detail["aum"] < detail["aum_threshold"] and "margin" in detail["reason"]


def test_same_seed_gives_the_same_scores():
    points, true = blobs(per_class=30, classes=2)
    inputs = make_inputs(true, points)
    first = REGISTRY["training_dynamics"]().run(inputs, {"epochs": 4}, quiet)
    second = REGISTRY["training_dynamics"]().run(inputs, {"epochs": 4}, quiet)
    assert np.array_equal(first["score"].to_numpy(), second["score"].to_numpy())


def test_a_late_early_epoch_is_refused_with_the_fix():
    points, true = blobs(per_class=10, classes=2)
    with pytest.raises(ConfigError, match="early_epoch=9 must be between 1 and epochs=4"):
        REGISTRY["training_dynamics"]().run(make_inputs(true, points),
                                              {"epochs": 4, "early_epoch": 9}, quiet)


def test_one_seed_still_scores_every_example():
    points, true = blobs(per_class=20, classes=2)
    frame = REGISTRY["training_dynamics"]().run(make_inputs(true, points), {"seeds": 1}, quiet)
    assert frame["score"].notna().all() and len(frame) == 40
