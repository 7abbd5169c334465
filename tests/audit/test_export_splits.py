"""Exports that cannot hurt (issue 11): the automatic rules act on train alone by default, so a
clean test split is exported unchanged; ``--dry-run`` prints the page's preview and writes
nothing; the weights summary counts the rows actually written at weight 0.

The small dataset (tests/audit/test_export_support.py) has 12 samples s00..s11: even = cat,
odd = dog; s02 s05 s08 s11 are test, the rest train.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from audit.export import ExportRules, export_dataset, plan_export, preview_export
from audit.store.exports import list_exports
from audit.store.flags import Decision, record_decisions
from tests.audit.test_export_support import ingest_small, succeeded_run
from tests.conftest import PROJECT_ROOT

TEST_IDS = ["s02", "s05", "s08", "s11"]
AUTOMATIC = dict(include_flagged=True, apply_suggested=0.9, dedupe=True)


@pytest.fixture
def small(store, settings, tmp_path) -> int:
    return ingest_small(store, settings, tmp_path / "src")


def _flags_in_both_splits(store, dataset_id: int) -> int:
    """Flags, suggestions and duplicate sets in train and in the (clean) test split."""
    suggest = {"suggested_label": "cat", "suggested_confidence": 0.95}
    return succeeded_run(store, dataset_id, [
        ("s01", "outlier", 0.05, True, {"reason": "far"}),
        ("s02", "outlier", 0.05, True, {"reason": "far"}),
        ("s07", "label_issue", 0.02, True, suggest),
        ("s05", "label_issue", 0.02, True, suggest),
        ("s11", "image_quality", 0.0, True, {"reason": "dark"}),
        ("s00", "near_duplicate", 0.1, False, {"set_id": "R", "leak": False}),
        ("s03", "near_duplicate", 0.1, True, {"set_id": "R", "duplicate_of": ["s00"]}),
        ("s08", "near_duplicate", 0.1, False, {"set_id": "T", "leak": False}),
        ("s11", "near_duplicate", 0.1, True, {"set_id": "T", "duplicate_of": ["s08"]}),
    ])


def _manifest(out, split: str, fmt: str = "csv") -> pd.DataFrame:
    path = out / f"{split}.{fmt}"
    frame = pd.read_csv(path, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path)
    return frame.set_index("id")


def test_a_clean_test_split_is_untouched_by_default(store, settings, small, tmp_path) -> None:
    _flags_in_both_splits(store, small)
    out = tmp_path / "default"
    export_dataset(store, settings, small, out, "csv", ExportRules(**AUTOMATIC))
    test = _manifest(out, "test")
    assert test.index.tolist() == TEST_IDS
    assert test["label"].tolist() == ["cat", "dog", "cat", "dog"]
    assert (test["label"] == test["original_label"]).all()
    assert set(test["change"]) == {"kept"} and set(test["reason"]) == {""}
    train = _manifest(out, "train")
    assert "s01" not in train.index and "s03" not in train.index  # flagged, duplicate
    assert train.loc["s07", "label"] == "cat"                       # suggested label

    weighted = tmp_path / "weighted"
    export_dataset(store, settings, small, weighted, "parquet",
                   ExportRules(**AUTOMATIC, weights=True))
    assert _manifest(weighted, "test", "parquet")["sample_weight"].tolist() == [1.0] * 4
    preview = preview_export(store, small, ExportRules(**AUTOMATIC))
    assert preview.by_rule[preview.by_rule["split"] == "test"].values.tolist() == [
        ["test", "none", 0, 0, 0, 4]]

    chosen = tmp_path / "chosen"
    export_dataset(store, settings, small, chosen, "csv",
                   ExportRules(**AUTOMATIC, auto_splits=["train", "test"]))
    test = _manifest(chosen, "test")
    assert test.index.tolist() == ["s05", "s08"]  # s02 flagged, s11 flagged and a duplicate
    assert test.loc["s05", "label"] == "cat" and test.loc["s05", "change"] == "relabelled"


def test_reviewed_decisions_and_leakage_still_reach_the_test_split(store, small) -> None:
    _flags_in_both_splits(store, small)
    record_decisions(store, small, [Decision("s08", "remove", note="blurry")])
    plan = plan_export(store, small, ExportRules(**AUTOMATIC)).set_index("sample_id")
    assert plan.loc["s08", ["action", "rule"]].tolist() == ["remove", "reviewer"]
    assert (plan.loc[["s02", "s05", "s11"], "action"] == "keep").all()
    succeeded_run(store, small, [
        ("s04", "near_duplicate", 0.1, False, {"set_id": "L", "leak": True}),
        ("s05", "near_duplicate", 0.1, True, {"set_id": "L", "leak": True}),
    ])
    leaked = plan_export(store, small, ExportRules(leakage="test")).set_index("sample_id")
    assert leaked.loc["s05", ["action", "rule"]].tolist() == ["remove", "leakage"]
    assert leaked.loc["s04", "action"] == "keep"


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", "export", *args], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def test_dry_run_prints_the_page_preview_and_writes_nothing(store, settings, subprocess_env,
                                                            small, tmp_path) -> None:
    _flags_in_both_splits(store, small)
    record_decisions(store, small, [Decision("s04", "relabel", "fox"),
                                    Decision("s08", "remove")])
    out = tmp_path / "out"
    options = ["--format", "csv", "--include-flagged", "--apply-suggested", "0.9", "--dedupe"]
    around = sorted(p.name for p in tmp_path.iterdir())
    dry = _cli(subprocess_env, "small", "--out", str(out), *options, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    preview = preview_export(store, small, ExportRules(**AUTOMATIC))
    assert dry.stdout == ("dry run: 'small' would be exported as csv; nothing written\n"
                          + preview.text() + "\n")
    assert "act on train only. Val and test change only through reviewed decisions." \
        in dry.stdout
    assert re.search(r"^ *train +8 +2 +2 +0 +6 +6$", dry.stdout, re.M)
    assert re.search(r"^ *test +4 +1 +0 +0 +3 +3$", dry.stdout, re.M)
    assert sorted(p.name for p in tmp_path.iterdir()) == around
    assert list_exports(store, small).empty

    done = _cli(subprocess_env, "small", "--out", str(out), *options)
    assert done.returncode == 0, done.stderr
    written = {split: len(_manifest(out, split)) for split in ("train", "test")}
    assert written == dict(zip(preview.by_split["split"], preview.by_split["written"]))


def test_weights_summary_counts_the_rows_written_at_weight_0(store, settings, small,
                                                             tmp_path) -> None:
    succeeded_run(store, small, [
        ("s01", "outlier", 0.0, True, None), ("s04", "outlier", 0.0, True, None),
        ("s06", "image_quality", 0.3, True, None), ("s07", "outlier", 0.9, False, None),
    ])
    record_decisions(store, small, [Decision("s03", "remove")])
    result = export_dataset(store, settings, small, tmp_path / "out", "csv",
                            ExportRules(weights=True))
    rows = pd.concat(_manifest(result.out_dir, split) for split in ("train", "test"))
    at_zero = int((rows["sample_weight"] == 0).sum())
    assert at_zero == 3  # s01 and s04 by their scores, s03 removed by a reviewer
    assert f"({at_zero} at weight 0)" in result.summary()
    assert result.summary() == ("wrote 12 rows with sample weights (3 at weight 0) as csv "
                                "from 12 (removed 1, relabelled 0)")
