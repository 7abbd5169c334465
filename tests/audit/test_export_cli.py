"""``python -m audit export`` end to end in a subprocess: files on success, one line and exit 2
on a user error."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd

from audit.store.flags import Decision, record_decisions
from tests.audit.test_export_support import ingest_small, succeeded_run
from tests.conftest import PROJECT_ROOT


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", "export", *args], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def test_cli_exports_and_reports_user_errors(store, settings, subprocess_env, tmp_path) -> None:
    dataset_id = ingest_small(store, settings, tmp_path / "src")
    succeeded_run(store, dataset_id, [("s07", "outlier", 0.1, True, None)])
    record_decisions(store, dataset_id, [Decision("s01", "relabel", "fox")])
    out = tmp_path / "out"
    done = _cli(subprocess_env, "small", "--out", str(out), "--format", "csv", "--include-flagged")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"exported 'small' to {out}: wrote 11 examples as csv from 12 "
                                   "(removed 1, relabelled 1)")
    train = pd.read_csv(out / "train.csv", keep_default_na=False).set_index("id")
    assert len(train) + len(pd.read_csv(out / "test.csv")) == 11
    assert "s07" not in train.index and train.loc["s01", "label"] == "fox"
    assert all((out / path).is_file() for path in train["path"])

    again = _cli(subprocess_env, "small", "--out", str(out), "--format", "csv")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: output {out} is not empty; choose a new or empty folder, or allow replacing a "
        "previous export (--overwrite on the command line, \"Replace a previous export in this "
        "folder\" on the Export page)"]
    weights = _cli(subprocess_env, "small", "--out", str(tmp_path / "w"), "--format",
                   "imagefolder", "--weights")
    assert weights.returncode == 2 and len(weights.stderr.strip().splitlines()) == 1
    assert "cannot carry sample weights" in weights.stderr


def test_cli_export_options_for_the_split_rule(store, settings, subprocess_env, tmp_path) -> None:
    dataset_id = ingest_small(store, settings, tmp_path / "src")
    succeeded_run(store, dataset_id, [
        ("s03", "label_issue", 0.1, True, {"suggested_label": "cat", "suggested_confidence": 0.5}),
        ("s05", "label_issue", 0.1, True, {"suggested_label": "cat", "suggested_confidence": 0.5}),
        ("s01", "label_issue", 0.9, False, None), ("s00", "label_issue", 0.3, False, None),
        ("s04", "label_issue", 0.5, False, None),
    ])
    help_text = " ".join(_cli(subprocess_env, "--help").stdout.split())
    assert "act only on the splits in --auto-splits, train alone by default" in help_text
    # no number: the engine's threshold for 'cat', the mean self-confidence of the cats (0.4):
    # s03 in train is relabelled, s05 in test is not until test is chosen
    engine = _cli(subprocess_env, "small", "--apply-suggested", "--dry-run")
    assert engine.returncode == 0, engine.stderr
    assert re.search(r"^ *train +8 +0 +1 +0 +8 +8$", engine.stdout, re.M)
    assert re.search(r"^ *test +4 +0 +0 +0 +4 +4$", engine.stdout, re.M)
    assert not re.search(r"^ *train +8 +0 +1", _cli(subprocess_env, "small", "--apply-suggested",
                                                   "0.6", "--dry-run").stdout, re.M)
    both = _cli(subprocess_env, "small", "--apply-suggested", "0.5", "--auto-splits",
                "train,test", "--dry-run")
    assert re.search(r"^ *train +8 +0 +1 +0 +8 +8$", both.stdout, re.M)
    assert re.search(r"^ *test +4 +0 +1 +0 +4 +4$", both.stdout, re.M)
    for args, words in [
        (["--apply-suggested", "sure", "--dry-run"], "error: --apply-suggested 'sure' is not a "
                                                     "number in [0, 1]"),
        (["--auto-splits", "dev", "--dry-run"], "error: split 'dev' is not one of"),
        ([], "error: export needs --out FOLDER (a new or empty folder), or --dry-run"),
    ]:
        refused = _cli(subprocess_env, "small", *args)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert refused.stderr.startswith(words), refused.stderr
