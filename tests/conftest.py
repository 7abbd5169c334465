"""Shared fixtures: a real settings object and a real DuckDB store in a temp directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from audit.settings import load_settings  # noqa: E402
from audit.store import Store  # noqa: E402
from jobs.liveness import live_worker_pids  # noqa: E402

TINY_CLIP = "sieve-tiny-test"
# A tiny open_clip architecture for tests (random weights unless a test saves a checkpoint).
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory) -> str:
    """Register the tiny open_clip architecture once (random weights, nothing downloaded)."""
    import open_clip

    path = tmp_path_factory.mktemp("clip_config") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture(scope="session")
def demo_audited_by_the_cli(tmp_path_factory) -> dict:
    """``python -m audit demo --no-serve`` once per test session, in its own data home: the
    command's result, the home and its store. The CLI test reads what it printed, the quality
    floors read the run's scores (the demo audit is the suite's slowest step, run once)."""
    home = tmp_path_factory.mktemp("cli_demo")
    env = dict(os.environ, AUDIT_DATA_HOME=str(home), PYTHONPATH=str(PROJECT_ROOT))
    env.pop("AUDIT_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "audit", "demo", "--no-serve"],
                            capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
                            timeout=1800)   # generous: busy machines
    settings = load_settings(toml_path=home / "absent.toml", env={"AUDIT_DATA_HOME": str(home)})
    yield {"result": result, "home": home, "settings": settings,
           "store": Store.from_settings(settings)}
    kill_workers_of(home)


CIFAR_ROWS = 3000


@pytest.fixture(scope="session")
def cifar_head() -> dict:
    """The first 3,000 CIFAR-10N images' arrays and labels, with their ``imagenet`` vectors
    (embedded once per test session: the embedder test and the quality floors share them).
    Skips where the benchmark data set is absent."""
    import numpy as np

    from bench.bench_quality import CIFAR_PATH, imagenet_vectors

    if not CIFAR_PATH.exists():
        pytest.skip(f"{CIFAR_PATH} is absent (a benchmark data set, not shipped with Sieve)")
    data = {key: value[:CIFAR_ROWS] for key, value in np.load(CIFAR_PATH).items()}
    return {**data, "imagenet": imagenet_vectors(data["images"])}


@pytest.fixture
def data_home(tmp_path: Path) -> Path:
    home = tmp_path / "data"
    home.mkdir()
    return home


@pytest.fixture
def settings(data_home: Path):
    """Settings with a temp data home and nothing read from the real environment."""
    return load_settings(toml_path=data_home / "absent.toml",
                         env={"AUDIT_DATA_HOME": str(data_home), "AUDIT_INGEST_WORKERS": "2"})


@pytest.fixture
def store(settings) -> Store:
    return Store.from_settings(settings)


@pytest.fixture
def subprocess_env(data_home: Path) -> dict:
    """Environment for child processes (CLI, workers) that use the temp data home."""
    env = dict(os.environ, AUDIT_DATA_HOME=str(data_home), PYTHONPATH=str(PROJECT_ROOT))
    env.pop("AUDIT_CONFIG", None)
    return env


@pytest.fixture(autouse=True)
def kill_detached_workers(request):
    """Workers started by ``ensure_worker`` log to logs/worker-<pid>.log: kill each one left.
    Only tests with a temp data home can start one."""
    if "data_home" not in request.fixturenames:
        yield
        return
    data_home = request.getfixturevalue("data_home")
    yield
    kill_workers_of(data_home)


def kill_workers_of(data_home: Path) -> None:
    """Kill every worker started for this data home (a job a page queued starts one)."""
    pids = {int(p.stem.split("-")[1]) for p in (data_home / "logs").glob("worker-[0-9]*.log")}
    for pid in sorted(pids | set(live_worker_pids(data_home)) - {os.getpid()}):
        if _is_worker_process(pid):
            kill_group(pid)


def _is_worker_process(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"jobs" in command and b"worker" in command


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return  # already gone
