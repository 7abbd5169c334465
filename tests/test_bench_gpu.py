"""The prepared GPU benchmark runs end to end here as a dry run on the CPU, so that the one run a
lent GPU machine gets is not spent finding a broken script (issue 12, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmark_dry_runs_on_the_cpu_and_reports_every_measure(tmp_path):
    out = tmp_path / "bench_gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_gpu", "--device", "cpu", "--images", "24",
         "--batch-size", "8", "--workers", "0", "--embedders", "imagenet",
         "--ray-embedders", "imagenet", "--knn-n", "3000",
         "--skip-demo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"].startswith("no GPU") and "--device cpu" in report["command"]
    embed, on_ray, knn = report["rows"]
    assert "imagenet" in embed["measure"] and embed["n"] == 24 and embed["failed"] == 0
    assert embed["img/s"] > 0 and embed["gpu util mean %"] is None      # no nvidia-smi here
    assert "imagenet" in on_ray["measure"] and "Ray Data (" in on_ray["measure"]
    assert on_ray["n"] == 24 and on_ray["failed"] == 0 and on_ray["img/s"] > 0
    assert knn["measure"].startswith("kNN graph, k=10, exact") and knn["n"] == 3000
    assert "| measure |" in done.stdout


def test_the_gpu_benchmark_refuses_a_missing_gpu_with_the_fix():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so there is no missing GPU to refuse")
    done = subprocess.run([sys.executable, "-m", "bench.bench_gpu", "--images", "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "pass --device cpu for a dry run" in done.stderr
