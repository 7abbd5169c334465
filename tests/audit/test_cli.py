"""The command line: help for every command, one-line user errors with exit 2, ingest and list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from audit.cli import build_parser
from tests.conftest import PROJECT_ROOT

COMMANDS = ["ingest", "datasets", "delete", "run", "order", "jobs", "cancel", "export", "serve", "demo"]


def _cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=timeout)


def test_every_command_is_registered() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert sorted(subparsers.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(subprocess_env, command) -> None:
    result = _cli(subprocess_env, command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m audit {command}")


def test_user_error_is_one_line_and_exit_2(subprocess_env, tmp_path) -> None:
    result = _cli(subprocess_env, "ingest", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} does not exist; give an image folder or a manifest file"
    ]
    assert "Traceback" not in result.stderr


def test_bad_setting_is_a_user_error(subprocess_env) -> None:
    result = _cli(dict(subprocess_env, AUDIT_KNN_K="lots"), "datasets")
    assert result.returncode == 2
    assert "knn_k='lots' is not a valid int" in result.stderr


def test_ingest_then_list(subprocess_env, tmp_path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (6, 6), label == "cat" and "red" or "blue").save(
                tmp_path / "ds" / label / f"{i}.png")
    (tmp_path / "ds" / "dog" / "3.png").write_text("not an image")
    empty = _cli(subprocess_env, "datasets")
    assert "no datasets yet" in empty.stdout
    result = _cli(subprocess_env, "ingest", str(tmp_path / "ds"), "--name", "pets")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ingested 'pets' (id 1): 7 samples, 2 classes, 1 unreadable"
    assert f"ingesting {tmp_path / 'ds'} (job 1)" in result.stderr   # a job, followed to its end
    listed = _cli(subprocess_env, "datasets").stdout.splitlines()
    assert listed[0].split() == ["id", "name", "version", "kind", "samples", "load_errors",
                                 "splits", "classes"]
    assert listed[1].split() == ["1", "pets", "1", "folder", "7", "1", "1", "2"]
    again = _cli(subprocess_env, "ingest", str(tmp_path / "ds"), "--name", "pets")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_unknown_dataset_for_run_is_a_user_error(subprocess_env) -> None:
    result = _cli(subprocess_env, "run", "missing")
    assert result.returncode == 2
    assert "no dataset 'missing'" in result.stderr


@pytest.mark.slow
def test_demo_without_serving_audits_in_the_background_and_exits_0(demo_audited_by_the_cli):
    from audit.store.datasets import get_dataset
    from audit.store.runs import latest_finished_run, scores_frame

    result, store = demo_audited_by_the_cli["result"], demo_audited_by_the_cli["store"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "auditing the demo in the background (job 1)" in result.stdout
    assert "job 1 succeeded: run 1" in result.stdout
    bars = [line for line in result.stderr.splitlines() if line.startswith("job 1 [")]
    assert len(bars) >= 3 and "100.0%  succeeded" in bars[-1]  # a live progress bar
    run_id = latest_finished_run(store, get_dataset(store, "demo").id)
    scores = scores_frame(store, run_id)
    assert scores.groupby("detector").size().min() == 1827  # every decodable demo image scored
    assert {"label_issue", "overall", "outlier", "near_duplicate"} <= set(scores["detector"])
    assert (demo_audited_by_the_cli["settings"].demo_dir / "truth.json").is_file()


def _small_folder(folder: Path) -> Path:
    for i, label in enumerate(["cat", "dog", "cat", "dog"]):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 6), (50 * i, 0, 0)).save(folder / label / f"{i}.png")
    return folder


@pytest.mark.reliability
def test_a_dataset_named_like_an_id_is_reached_by_name_and_never_guessed(subprocess_env,
                                                                         tmp_path) -> None:
    """Dataset 1 is "cats", dataset 2 is named "1": bare 1 is refused as ambiguous, id:1 and
    name:1 say which (issue 14: `export 1` used to pick id 1 silently)."""
    assert _cli(subprocess_env, "ingest", str(_small_folder(tmp_path / "a")), "--name",
                "cats").returncode == 0
    assert _cli(subprocess_env, "ingest", str(_small_folder(tmp_path / "b")), "--name",
                "1").returncode == 0
    ambiguous = _cli(subprocess_env, "order", "1", "--out", str(tmp_path / "o"))
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip() == ("error: '1' is the id of dataset 'cats' and the name of "
                                        "dataset 2; write id:1 for the first or name:1 for the "
                                        "second")
    for reference, name in [("id:1", "cats"), ("name:1", "1"), ("2", "1"), ("cats", "cats")]:
        result = _cli(subprocess_env, "order", reference, "--out", str(tmp_path / "o"))
        assert result.returncode == 0, result.stderr
        assert f"{name!r}: 4 rows" in result.stdout
    assert "id:N or name:TEXT" in " ".join(_cli(subprocess_env, "export", "--help").stdout.split())


@pytest.mark.reliability
def test_serving_another_address_needs_the_flag_and_warns(subprocess_env) -> None:
    refused = _cli(subprocess_env, "serve", "--host", "192.0.2.1")
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    # 192.0.2.1 (TEST-NET) is on no interface here: the server cannot bind it, nothing is exposed
    server = subprocess.Popen([sys.executable, "-m", "audit", "serve", "--host", "192.0.2.1",
                               "--allow-remote", "--port", "1"], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True, env=subprocess_env,
                              cwd=PROJECT_ROOT, start_new_session=True)
    try:
        first_line = server.stderr.readline()
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
    assert first_line.startswith("warning: serving on 192.0.2.1 with no login")


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state == "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_serve_stops_its_dashboard(subprocess_env, signum) -> None:
    """Only the CLI's own pid gets the signal (as from `kill`, not a terminal's Ctrl-C to the
    whole group): the Streamlit child must not outlive it (issue 11)."""
    from tests.dashboard.server import free_port, wait_until_healthy

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "audit", "serve", "--port", str(port)],
                              env=subprocess_env, cwd=PROJECT_ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server)
        dashboard = _children(server.pid)
        assert dashboard, "serve started no dashboard process"
        server.send_signal(signum)
        assert server.wait(timeout=120) == 0
        assert all(_gone(pid) for pid in dashboard), dashboard
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)


def test_ctrl_c_on_run_wait_says_the_job_goes_on_and_how_to_cancel(subprocess_env,
                                                                    tmp_path) -> None:
    assert _cli(subprocess_env, "ingest", str(_small_folder(tmp_path / "a")), "--name",
                "pets").returncode == 0
    waiting = subprocess.Popen([sys.executable, "-m", "audit", "run", "pets", "--wait",
                                "--embedder", "pixels"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=subprocess_env,
                               cwd=PROJECT_ROOT, start_new_session=True)
    first = waiting.stdout.readline()             # "queued job N ..." once it is following
    waiting.send_signal(signal.SIGINT)
    _, errors = waiting.communicate(timeout=120)
    job_id = first.split()[2] if first.startswith("queued job") else "?"
    assert waiting.returncode == 130, (first, errors)
    assert "goes on in the background" in errors
    assert f"python -m audit cancel {job_id}" in errors
    _cli(subprocess_env, "cancel", job_id)
