"""Class order: numbers sort as numbers, an explicit order wins and is checked, and
``python -m audit order`` writes the orders a supplied .npy must follow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from audit.classes import class_order, parse_class_order
from audit.ingest import ingest
from audit.errors import ConfigError, InputError
from audit.config import AuditConfig
from audit.plan import run_audit
from audit.store import runs
from audit.store.lookups import dataset_labels
from tests.audit.numeric_dataset import (CLASSES, N_SAMPLES, PLANTED, believed_with_planted,
                                         confident_probs, numeric_labels, write_numeric_dataset)
from tests.conftest import PROJECT_ROOT

PLANTED_IDS = {f"s{row:03d}": believed for row, believed in PLANTED.items()}


@pytest.fixture
def numeric_dataset(store, settings, tmp_path) -> int:
    return ingest(store, write_numeric_dataset(tmp_path / "numbers"), settings, name="numbers")


def label_issue_run(store, settings, dataset_id: int, probs_path, **overrides) -> int:
    return run_audit(store, settings, dataset_id, {
        "detectors": ["label_issue"], "embedder": "pixels", "loader_workers": 0,
        "pred_probs_file": str(probs_path), **overrides})


def flagged_suggestions(store, run_id: int) -> dict[str, str]:
    scores = runs.scores_frame(store, run_id)
    flagged = scores[scores["is_issue"]]
    return {row.sample_id: json.loads(row.details)["suggested_label"]
            for row in flagged.itertuples()}


# --- the order itself ----------------------------------------------------------------------

def test_integer_labels_sort_as_numbers_not_text():
    assert class_order(["10", "2", "1", "12", "3"]) == ["1", "2", "3", "10", "12"]
    assert class_order([10, 2, 2, 1]) == ["1", "2", "10"]


def test_decimal_labels_sort_as_numbers_and_mixed_labels_as_text():
    assert class_order(["0.5", "10", "2.25", "-1"]) == ["-1", "0.5", "2.25", "10"]
    assert class_order(["10", "2", "cat"]) == ["10", "2", "cat"]
    assert class_order(["nan", "inf", "1"]) == ["1", "inf", "nan"]     # not finite: text


def test_explicit_order_wins_and_may_name_classes_no_sample_has():
    assert class_order(["a", "b"], ["b", "unused", "a"]) == ["b", "unused", "a"]


def test_explicit_order_missing_a_label_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"leaves out 2 label\(s\) of the data: '3', '10'"):
        class_order(["1", "3", "10"], ["1"])


def test_explicit_order_naming_a_class_twice_is_refused():
    with pytest.raises(ConfigError, match=r"names \['b'\] more than once"):
        class_order(["a", "b"], ["b", "a", "b"])


def test_class_order_option_is_read_from_a_file_or_a_comma_list(tmp_path):
    (tmp_path / "order.txt").write_text("dog\n\n  cat  \nbird, striped\n")
    assert parse_class_order(str(tmp_path / "order.txt")) == ["dog", "cat", "bird, striped"]
    assert parse_class_order(" 3, 1 ,2 ") == ["3", "1", "2"]
    with pytest.raises(InputError, match="missing.txt: class order file not found"):
        parse_class_order(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("order, named", [
    ([], "non-empty list"), (["a", "a"], r"\['a'\] more than once"), (["a", " "], "entry 1"),
    ("a,b", "non-empty list"),
])
def test_config_refuses_a_bad_class_order(settings, order, named):
    with pytest.raises(ConfigError, match=named):
        AuditConfig.from_dict({"class_order": order}, settings)


def test_dashboard_class_list_uses_the_same_numeric_order(store, numeric_dataset):
    classes, splits = dataset_labels(store, numeric_dataset)
    assert classes == CLASSES and splits == ["train"]


# --- runs ------------------------------------------------------------------------------------

def test_numeric_labels_align_with_pred_probs_columns_in_numeric_order(store, settings,
                                                                       numeric_dataset, tmp_path):
    labels = numeric_labels()
    np.save(tmp_path / "probs.npy", confident_probs(believed_with_planted(labels), CLASSES))
    run_id = label_issue_run(store, settings, numeric_dataset, tmp_path / "probs.npy")
    assert runs.get_run(store, run_id)["status"] == "succeeded"
    assert flagged_suggestions(store, run_id) == PLANTED_IDS
    facts = runs.run_samples_frame(store, run_id).set_index("sample_id")
    assert facts.loc["s009", "predicted_label"] == "10"           # row 9 is labelled "10"
    assert facts.loc["s009", "predicted_confidence"] == pytest.approx(0.89)


def test_explicit_class_order_with_an_unused_class_is_honoured(store, settings, numeric_dataset,
                                                               tmp_path):
    columns = [*reversed(CLASSES), "13"]                           # "13": no sample carries it
    np.save(tmp_path / "probs.npy", confident_probs(believed_with_planted(numeric_labels()),
                                                    columns))
    run_id = label_issue_run(store, settings, numeric_dataset, tmp_path / "probs.npy",
                             class_order=columns)
    assert runs.get_run(store, run_id)["status"] == "succeeded"
    assert flagged_suggestions(store, run_id) == PLANTED_IDS


def test_explicit_class_order_missing_a_label_fails_the_run(store, settings, numeric_dataset,
                                                            tmp_path):
    np.save(tmp_path / "probs.npy", confident_probs(numeric_labels(), CLASSES))
    without_seven = [name for name in CLASSES if name != "7"]
    with pytest.raises(ConfigError, match=r"leaves out 1 label\(s\) of the data: '7'"):
        label_issue_run(store, settings, numeric_dataset, tmp_path / "probs.npy",
                        class_order=without_seven)
    run = runs.list_runs(store, numeric_dataset).iloc[-1]
    assert run["status"] == "failed" and "'7'" in run["error"]


# --- python -m audit order ---------------------------------------------------------------

def _order_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", "order", *args], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def test_order_command_writes_the_orders_a_user_builds_a_npy_from(store, settings, tmp_path,
                                                                   subprocess_env):
    manifest = write_numeric_dataset(tmp_path / "numbers", broken=1)
    dataset_id = ingest(store, manifest, settings, name="numbers")
    result = _order_cli(subprocess_env, "numbers", "--out", str(tmp_path / "order"))
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'order' / 'sample_order.csv'}" in result.stdout
    assert "'numbers': 61 rows, 12 classes" in result.stdout
    samples = pd.read_csv(tmp_path / "order" / "sample_order.csv", dtype={"label": str})
    assert samples.columns.tolist() == ["row_index", "sample_id", "split", "path", "label"]
    assert samples["row_index"].tolist() == list(range(N_SAMPLES + 1))   # the broken row too
    assert samples["sample_id"].tolist() == pd.read_csv(manifest)["id"].tolist()
    assert samples.loc[9, "label"] == "10" and samples.loc[60, "path"] == "broken0.png"
    columns = (tmp_path / "order" / "class_order.txt").read_text().splitlines()
    assert columns == CLASSES
    assert not list((tmp_path / "order").glob(".*tmp"))              # temp files renamed away

    np.save(tmp_path / "probs.npy", confident_probs(samples["label"].tolist(), columns))
    run_id = label_issue_run(store, settings, dataset_id, tmp_path / "probs.npy")
    assert runs.get_run(store, run_id)["status"] == "succeeded"
    assert flagged_suggestions(store, run_id) == {}                    # every column lines up


def test_order_command_honours_class_order_and_rewrites_in_place(store, settings, tmp_path,
                                                                  subprocess_env):
    ingest(store, write_numeric_dataset(tmp_path / "numbers"), settings, name="numbers")
    out = tmp_path / "order"
    out.mkdir()
    (out / "class_order.txt").write_text("stale\n")
    given = ",".join([*reversed(CLASSES), "13"])
    result = _order_cli(subprocess_env, "numbers", "--out", str(out), "--class-order", given)
    assert result.returncode == 0, result.stderr
    assert (out / "class_order.txt").read_text().splitlines() == [*reversed(CLASSES), "13"]
    missing = _order_cli(subprocess_env, "numbers", "--out", str(out), "--class-order", "1,2")
    assert missing.returncode == 2
    assert "class_order leaves out 10 label(s) of the data: '3', '4'" in missing.stderr
