"""``python -m audit export`` end to end in a subprocess: files on success, one line and exit 2
on a user error."""

from __future__ import annotations

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
        f"error: output {out} is not empty; choose a new or empty folder, or pass --overwrite "
        "to replace a previous export"]
    weights = _cli(subprocess_env, "small", "--out", str(tmp_path / "w"), "--format",
                   "imagefolder", "--weights")
    assert weights.returncode == 2 and len(weights.stderr.strip().splitlines()) == 1
    assert "cannot carry sample weights" in weights.stderr
