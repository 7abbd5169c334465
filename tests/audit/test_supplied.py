"""Supplied pred_probs: misaligned arrays (chance-level, permuted columns) are refused with the
fix, and a run that only needs pred_probs embeds nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from audit.ingest import ingest
from audit.errors import InputError
from audit.plan import run_audit
from audit.store import runs
from audit.supplied import (Agreement, check_label_agreement, looks_permuted,
                            measure_agreement, no_better_than_chance)
from tests.audit.numeric_dataset import (CLASSES, N_SAMPLES, PLANTED, believed_with_planted,
                                         confident_probs, numeric_labels, write_numeric_dataset)

FIX = "python -m audit order DATASET --out DIR` (class_order.txt), or pass --class-order"


@pytest.fixture
def numeric_dataset(store, settings, tmp_path) -> int:
    return ingest(store, write_numeric_dataset(tmp_path / "numbers"), settings, name="numbers")


def supplied_run(store, settings, dataset_id: int, probs: np.ndarray, path) -> int:
    np.save(path, probs)
    return run_audit(store, settings, dataset_id, {
        "detectors": ["label_issue"], "embedder": "pixels", "loader_workers": 0,
        "pred_probs_file": str(path)})


def label_indices() -> np.ndarray:
    return np.array([CLASSES.index(name) for name in numeric_labels()])


# --- the rules, on tiny arrays ---------------------------------------------------------------

def test_agreement_counts_decisive_rows_and_chance_from_the_marginals():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
    agreement = measure_agreement(labels, probs)           # the tied last row has no vote
    assert agreement.rows == 5
    assert agreement.observed == pytest.approx(4 / 5)
    assert agreement.chance == pytest.approx((3 / 5) * (2 / 5) + (2 / 5) * (3 / 5))


def test_chance_rule_needs_the_larger_of_the_margin_and_three_standard_errors():
    # chance 0.5 on 100 rows: SE 0.05, so observed must reach 0.5 + 3 * 0.05 = 0.65
    assert no_better_than_chance(Agreement(100, 0.64, 0.5, 0.64))
    assert not no_better_than_chance(Agreement(100, 0.66, 0.5, 0.66))
    # chance 0.01 on 10,000 rows: 3 SE is 0.003, so the 0.05 margin rules: 0.06 is needed
    assert no_better_than_chance(Agreement(10_000, 0.055, 0.01, 0.055))
    assert not no_better_than_chance(Agreement(10_000, 0.065, 0.01, 0.065))


def test_permutation_rule_needs_both_the_gain_and_the_ratio():
    assert looks_permuted(Agreement(100, 0.10, 0.1, 0.31))
    assert not looks_permuted(Agreement(100, 0.10, 0.1, 0.29))     # gain below 0.2
    assert not looks_permuted(Agreement(100, 0.50, 0.1, 0.72))     # ratio below 1.5


def test_swapped_columns_are_found_and_a_good_array_is_not_called_permuted():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    probs = confident_probs([str(c) for c in labels], ["0", "1", "2", "3"])
    good, swapped = measure_agreement(labels, probs), measure_agreement(labels, probs[:, ::-1])
    assert good.observed == 1.0 and not looks_permuted(good)
    assert swapped.observed == 0.0 and swapped.best_permuted == 1.0 and looks_permuted(swapped)


def test_random_columns_on_few_samples_are_not_mistaken_for_a_permutation():
    rng = np.random.default_rng(1)
    called = [looks_permuted(measure_agreement(rng.integers(0, 12, 60),
                                               rng.dirichlet(np.ones(12), 60)))
              for _ in range(50)]
    assert sum(called) <= 2          # the permutation is fitted on one half, scored on the other


def test_fewer_than_twenty_decisive_rows_are_not_judged(tmp_path):
    labels = np.arange(20) % 2
    swapped = np.eye(2)[1 - labels]                           # every argmax wrong
    check_label_agreement(tmp_path / "p.npy", swapped[:19], labels[:19])       # too few: passes
    with pytest.raises(InputError, match="p.npy: pred_probs columns look permuted"):
        check_label_agreement(tmp_path / "p.npy", swapped, labels)


# --- runs ------------------------------------------------------------------------------------

@pytest.mark.reliability
def test_chance_level_pred_probs_are_refused_with_the_numbers_and_the_fix(store, settings,
                                                                          numeric_dataset,
                                                                          tmp_path):
    probs = np.random.default_rng(3).dirichlet(np.ones(12), N_SAMPLES)
    labels, argmax = label_indices(), probs.argmax(axis=1)
    observed = np.mean(argmax == labels)
    chance = sum(np.mean(labels == k) * np.mean(argmax == k) for k in range(12))
    with pytest.raises(InputError) as caught:
        supplied_run(store, settings, numeric_dataset, probs, tmp_path / "random_probs.npy")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'random_probs.npy'}: pred_probs agrees with the "
                              "labels no better than chance")
    assert f"on {observed:.1%} of 60 samples, chance is {chance:.1%}" in message
    assert "rows must follow sample_order.csv" in message and FIX in message
    assert runs.list_runs(store, numeric_dataset)["status"].tolist() == ["failed"]


@pytest.mark.reliability
def test_columns_in_text_order_are_refused_as_permuted(store, settings, numeric_dataset,
                                                       tmp_path):
    text_order = sorted(CLASSES)                          # "1", "10", "11", "12", "2", ...
    probs = confident_probs(numeric_labels(), text_order)
    with pytest.raises(InputError) as caught:
        supplied_run(store, settings, numeric_dataset, probs, tmp_path / "text_order.npy")
    message = str(caught.value)
    assert "text_order.npy: pred_probs columns look permuted" in message
    # only class "1" has the same column in both orders: 5 of 60 rows agree
    assert "agrees with the given labels on 8.3% of 60 samples, chance is 8.3%" in message
    assert re.search(r"would agree on (\d+\.\d)%", message).group(1) == "100.0"
    assert FIX in message


def test_a_run_that_only_needs_pred_probs_embeds_nothing(store, settings, numeric_dataset,
                                                         tmp_path):
    probs = confident_probs(believed_with_planted(numeric_labels()), CLASSES)
    messages = []
    np.save(tmp_path / "probs.npy", probs)
    run_id = run_audit(store, settings, numeric_dataset, {
        "detectors": ["label_issue"], "embedder": "pixels", "loader_workers": 0,
        "pred_probs_file": str(tmp_path / "probs.npy")}, log=messages.append)
    run = runs.get_run(store, run_id)
    timings, notes = json.loads(run["timings"]), json.loads(run["notes"])
    assert run["status"] == "succeeded"
    assert "embed" not in timings and "knn" not in timings and "probe" in timings
    assert notes["embed"].startswith("skipped: no selected detector needs embeddings")
    assert "pred_probs were supplied" in notes["embed"]
    assert not (settings.data_home / "embeddings").exists()
    assert json.loads(run["model_ids"]) == {"pred_probs": "supplied:probs.npy"}
    assert not any(m.startswith("embedding") for m in messages)
    scores = runs.scores_frame(store, run_id)
    assert len(scores) == N_SAMPLES and scores["is_issue"].sum() == len(PLANTED)
    facts = runs.run_samples_frame(store, run_id)
    assert facts["map_x"].isna().all() and facts["map_y"].isna().all()
    assert facts["predicted_label"].tolist() == believed_with_planted(numeric_labels())
