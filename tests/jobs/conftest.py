"""Fixtures for the job tests: tiny real image datasets, and worker processes that are always
killed at teardown so no test leaves one running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audit.ingest import ingest
from tests.conftest import kill_group as _kill_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def write_image_folder(root: Path, classes: int = 3, per_class: int = 10, size: int = 16,
                       seed: int = 0) -> Path:
    """ROOT/<class>/<n>.png: each class a colour plus noise, so the images differ."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros((size, size, 3)) + rng.uniform(0, 255, size=3)
        for index in range(per_class):
            pixels = np.clip(base + rng.normal(0, 40, size=base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@pytest.fixture
def make_dataset(store, settings, tmp_path):
    """Factory: ingest a generated image folder; returns the dataset id."""
    def make(name: str = "tiny", **folder_options) -> int:
        root = write_image_folder(tmp_path / "images" / name, **folder_options)
        return ingest(store, root, settings, name=name)
    return make


@pytest.fixture
def spawn_worker(subprocess_env, data_home):
    """Factory: start ``python -m jobs worker ARGS``; every worker is killed at teardown."""
    started: list[subprocess.Popen] = []

    def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(data_home / f"test-worker-{len(started)}.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "jobs", "worker", *args],
                                   env={**subprocess_env, **(env or {})}, cwd=PROJECT_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        started.append(process)
        return process

    yield spawn
    for process in started:
        _kill_group(process.pid)
        process.wait(timeout=10)


def worker_log(data_home: Path) -> str:
    """Everything the test's workers printed, for assertion messages."""
    files = sorted(data_home.glob("*.log")) + sorted(data_home.glob("logs/*.log"))
    return "\n".join(p.read_text(errors="replace") for p in files)
