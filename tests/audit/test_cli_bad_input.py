"""Bad input at every entry point of ``python -m audit``: one line naming the problem and the
fix, exit 2, never a traceback and never a hang (issue 14). Each case is a real subprocess.
An ingest or export found wrong by its job (issue 13) ends the same way; the job's progress
lines come before the error line on stderr, and stdout stays empty."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from audit.ingest import ingest
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.reliability
DEADLINE_S = 120  # a generous bound: a FIFO used to hang ingest for ever
NOBODY = 65534


def _images(folder: Path, count: int = 4) -> Path:
    for i in range(count):
        (folder / ("cat" if i % 2 else "dog")).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 6), (40 * i, 0, 0)).save(folder / ("cat" if i % 2 else "dog")
                                                      / f"{i}.png")
    return folder


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _liar_npy(path: Path) -> Path:
    with open(path, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (20_000_000_000, 1)})
    return path


def _linked_folder(tmp: Path) -> Path:
    folder = _images(tmp / "linked")
    os.symlink("/etc/passwd", folder / "cat" / "passwd.png")
    return folder


def _ambiguous(store, settings, tmp: Path) -> None:
    ingest(store, _images(tmp / "one"), settings, name="1")  # id 2, named "1"


def _read_only_home(tmp: Path) -> Path:
    home = tmp / "read-only-home"
    home.mkdir()
    home.chmod(0o555)  # root ignores modes: the command then runs as nobody, see _run
    return home


# id -> (arguments, extra environment, what the one line must say); {t} is a temp folder
CASES = {
    "ingest-missing": (["ingest", "{t}/nowhere"], {}, "does not exist"),
    "ingest-nul-in-path": (["ingest", lambda t: _write(t / "m.csv", 'path,label\n"a\0b.png",x\n')],
                           {}, "contains a NUL byte"),
    "ingest-deep-jsonl": (["ingest", lambda t: _write(
        t / "m.jsonl", '{"path": "a.png", "label": ' + "[" * 100_000 + "]" * 100_000 + "}\n")],
        {}, "nests arrays or objects too deeply"),
    "ingest-fifo-manifest": (["ingest", lambda t: _fifo(t / "m.csv")], {}, "a FIFO"),
    "ingest-link-out-of-folder": (["ingest", _linked_folder], {}, "is a link to /etc/passwd"),
    "ingest-garbage-parquet": (["ingest", lambda t: _write(t / "m.parquet", "not parquet")], {},
                               "cannot be read as parquet"),
    "ingest-manifest-over-limit": (["ingest", lambda t: _write(t / "m.csv", "path,label\n" * 50)],
                                   {"AUDIT_MAX_FILE_BYTES": "100"}, "over the limit of 100"),
    "run-unknown-dataset": (["run", "nothing"], {}, "no dataset 'nothing'"),
    "run-pred-probs-header-80-gb": (["run", "good", "--pred-probs",
                                     lambda t: _liar_npy(t / "p.npy")], {},
                                    "declares a pred_probs array of shape (20000000000, 1)"),
    "run-embeddings-not-npy": (["run", "good", "--embeddings",
                                lambda t: _write(t / "e.npy", "text")], {},
                               "not a readable .npy array"),
    "run-embeddings-wrong-rows": (["run", "good", "--embeddings",
                                   lambda t: _save(t / "e.npy", np.ones((3, 2)))], {},
                                  "has shape (3, 2), expected (4, ...)"),
    "run-k-zero": (["run", "good", "--k", "0"], {}, "k=0 is not allowed"),
    "export-ambiguous-name": (["export", "1", "--out", "{t}/out"], {}, "write id:1"),
    "order-out-is-a-file": (["order", "good", "--out", lambda t: _write(t / "f", "x")], {},
                            "cannot write the order files"),
    "jobs-log-unknown": (["jobs", "--log", "99999999999999999999"], {}, "no job"),
    "serve-remote-without-flag": (["serve", "--host", "0.0.0.0"], {}, "--allow-remote"),
    "demo-remote-host-without-flag": (["demo"], {"AUDIT_HOST": "0.0.0.0"}, "--allow-remote"),
    "toml-infinite-int": (["datasets"], {"AUDIT_CONFIG": lambda t: _write(t / "a.toml",
                                                                         "knn_k = inf\n")},
                          "knn_k=inf is not a valid int"),
    "bad-bool-setting": (["datasets"], {"AUDIT_FOLLOW_OUTSIDE_LINKS": "maybe"},
                         "follow_outside_links='maybe' is not a valid bool"),
    "read-only-data-home": (["datasets"], {"AUDIT_DATA_HOME": _read_only_home},
                            "is not writable"),
}


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _resolve(value, tmp: Path) -> str:
    return str(value(tmp)) if callable(value) else value.format(t=tmp)


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "audit", *argv]
    if os.geteuid() == 0 and "read-only-home" in env.get("AUDIT_DATA_HOME", ""):
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a folder's mode cannot stop root")
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   *command]
    return run_in_own_group(command, env)


def run_in_own_group(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run to the end; past the deadline kill the whole group (a server a regression starts
    must not outlive the test) and fail."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{command[3:]} did not finish within {DEADLINE_S} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def good_dataset(store, settings, tmp_path) -> None:
    """Dataset 1, "good" (4 images), and dataset 2, named "1"."""
    ingest(store, _images(tmp_path / "good"), settings, name="good")
    _ambiguous(store, settings, tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(case, subprocess_env, good_dataset, tmp_path) -> None:
    arguments, extra_env, expected = CASES[case]
    cases = tmp_path / "case"
    cases.mkdir()
    argv = [_resolve(a, cases) for a in arguments]
    env = dict(subprocess_env, **{k: _resolve(v, cases) for k, v in extra_env.items()})
    result = _run(argv, env)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith("error: "), result.stderr
    assert [line for line in lines if line.startswith("error")] == lines[-1:]
    assert expected in lines[-1]
    assert all(line.startswith(("job ", "ingesting ", "exporting ")) for line in lines[:-1])
    assert result.stdout == ""


def test_unreadable_files_are_listed_after_ingest(subprocess_env, tmp_path) -> None:
    folder = _images(tmp_path / "ds")
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    result = _run(["ingest", str(folder)], subprocess_env)
    assert result.returncode == 0, result.stderr
    assert "1 unreadable" in result.stdout
    assert "unreadable cat/broken.png: not an image (unrecognised format)" in result.stderr
