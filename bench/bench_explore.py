"""Explore at scale: a synthetic store of N samples (default 1,000,000) with 8 detectors' scores.

Measures, on the server side (the same calls the dashboard makes, through the store API):
building the store and the run's Explore index once, the Explore query (filter + sort + one
page of 48, count included) p50 / p95 over a mix of filters and pages, the Insights
aggregations, and this process's memory. With ``--browser`` it also serves the store with
``python -m audit serve`` and times the Explore page in headless Chromium until the first
page of images is visible, and reads the server's memory.

    python -m bench.bench_explore [--samples 1000000] [--repeats 20] [--browser]

Prints a table; writes the figures as JSON under bench/out/.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from audit.processes import peak_rss_mb  # noqa: E402
from audit.store import Store  # noqa: E402
from audit.store import explore, insights  # noqa: E402
from audit.store.explore import ExploreFilters  # noqa: E402
from audit.store.flags import Decision, record_decisions  # noqa: E402
from bench.figures import save_figures  # noqa: E402
from bench.synthetic_runs import load_synthetic_run  # noqa: E402

DETECTORS = ["image_quality", "knn_label", "label_issue", "near_duplicate", "outlier",
             "overall", "training_dynamics", "vl_consistency"]
DECISIONS = 1_000
CLASSES = 100
CASES = {
    "default (flagged, worst first)": ExploreFilters(flagged_only=True),
    "everything, dataset order": ExploreFilters(sort_by="order"),
    "one detector flagged, by its score": ExploreFilters(detector="label_issue", flagged_only=True,
                                                         sort_by="label_issue"),
    "2 classes + split, by outlier": ExploreFilters(classes=("class_3", "class_7"),
                                                    splits=("train",), sort_by="outlier"),
    "threshold 0.2, by number of flags": ExploreFilters(detector="knn_label", max_score=0.2,
                                                        sort_by="flags"),
    "text search": ExploreFilters(search="class 42", sort_by="vl_consistency"),
    "undecided, by knn_label": ExploreFilters(decision="undecided", sort_by="knn_label"),
    "removed only": ExploreFilters(decision="remove"),
}
PAGES = (0, 1, 5, 50)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    args = _parser().parse_args()
    home = Path(args.data_home or tempfile.mkdtemp(prefix="sieve-bench-"))
    store = Store(home / "audit.duckdb", lock_timeout_s=120)
    figures = {"machine": _machine(), "samples": args.samples, "command": " ".join(sys.argv)}
    try:
        dataset_id, run_id = _build(store, args.samples, figures)
        figures["explore"] = _explore(store, dataset_id, run_id, args.repeats)
        figures["insights_ms"] = _insights(store, dataset_id, run_id)
        figures["bench_process_peak_rss_mib"] = peak_rss_mb()
        if args.browser:
            figures["browser"] = _browser(home, dataset_id)
    finally:
        if not args.data_home:
            shutil.rmtree(home, ignore_errors=True)
    _print_table(figures)
    save_figures(f"bench_explore_{figures['samples']}", figures)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20, help="queries per filter case")
    parser.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    parser.add_argument("--data-home", help="keep the synthetic store here (default: a temp dir)")
    return parser


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": os.getloadavg()}


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - start) * 1000


def _build(store: Store, samples: int, figures: dict) -> tuple[int, int]:
    root = store.path.parent
    _class_pictures(root / "images")
    (dataset_id, run_id), figures["load_ms"] = _timed(
        load_synthetic_run, store, samples, DETECTORS, 0, CLASSES, str(root))
    step = max(1, samples // DECISIONS)
    decisions = [Decision(f"s{i:07d}", "remove") for i in range(0, samples, step)][:DECISIONS]
    record_decisions(store, dataset_id, decisions)
    _, figures["index_build_ms"] = _timed(explore.ensure_explore_index, store, run_id)
    return dataset_id, run_id


def _class_pictures(folder: Path) -> None:
    """One small picture per class; every sample of a class points at it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(CLASSES):
        Image.new("RGB", (64, 64), (k * 2 % 256, 90, 255 - k * 2 % 256)).save(
            folder / f"class_{k}.png")


def _explore(store: Store, dataset_id: int, run_id: int, repeats: int) -> dict:
    per_case, every = {}, []
    for name, filters in CASES.items():
        times = []
        for repeat in range(repeats):
            page = PAGES[repeat % len(PAGES)]
            _, ms = _timed(explore.explore_page, store, dataset_id, run_id, filters, page, 48)
            times.append(ms)
        per_case[name] = {"p50_ms": _percentile(times, 50), "p95_ms": _percentile(times, 95)}
        every += times
    return {"cases": per_case, "p50_ms": _percentile(every, 50), "p95_ms": _percentile(every, 95),
            "queries": len(every)}


def _insights(store: Store, dataset_id: int, run_id: int) -> dict:
    calls = {
        "detector_summary": lambda: insights.detector_summary(store, run_id),
        "score_histograms": lambda: insights.score_histograms(store, run_id, 20),
        "issues_by_class_and_split": lambda: insights.issues_by_class_and_split(store, run_id),
        "label_matrix": lambda: insights.label_matrix(store, run_id),
        "map_points (20k)": lambda: insights.map_points(store, run_id, 20_000),
        "run_issue_counts": lambda: insights.run_issue_counts(store, dataset_id),
    }
    figures = {name: statistics.median(_timed(call)[1] for _ in range(3))
               for name, call in calls.items()}
    figures["whole page (sum)"] = sum(figures.values())
    return figures


def _percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- the page in a browser -----------------------------------------------------------------

def _browser(home: Path, dataset_id: int) -> dict:
    from playwright.sync_api import expect, sync_playwright

    with _served(home) as (url, server_pid):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=BROWSER_ARGS)
            loads = []
            for _ in range(4):
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                start = time.perf_counter()
                page.goto(url, wait_until="domcontentloaded")
                expect(page.get_by_text("matching samples")).to_be_visible(timeout=120_000)
                expect(page.locator("img").nth(47)).to_be_visible(timeout=120_000)
                loads.append((time.perf_counter() - start) * 1000)
                page.close()
            browser.close()
        return {"first_load_ms": loads[0], "warm_load_p50_ms": statistics.median(loads[1:]),
                "server_rss_mib": _rss_mib_of_tree(server_pid)}


class _served:
    """``python -m audit serve`` on a free port, in its own process group."""

    def __init__(self, home: Path):
        self.home = home

    def __enter__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = dict(os.environ, AUDIT_DATA_HOME=str(self.home), PYTHONPATH=str(PROJECT_ROOT))
        command = [sys.executable, "-m", "audit", "serve", "--port", str(port)]
        self.server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url)
        return url, self.server.pid

    def __exit__(self, *exc_info):
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(timeout=30)


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the dashboard did not start at {url}")


def _rss_mib_of_tree(pid: int) -> float:
    """Resident memory of a process and its children (the CLI and its streamlit server)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total_kib = 0
    for member in [str(pid), *children]:
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


# --- output --------------------------------------------------------------------------------

def _print_table(figures: dict) -> None:
    print(f"\nExplore benchmark: {figures['samples']:,} samples x {len(DETECTORS)} detectors, "
          f"{figures['machine']['cpus']} CPUs, load {figures['machine']['load_average_at_start']}")
    rows = [("load synthetic store", figures["load_ms"]),
            ("build Explore index (once per run)", figures["index_build_ms"])]
    rows += [(f"explore: {name} p50 / p95", f"{c['p50_ms']:.0f} / {c['p95_ms']:.0f}")
             for name, c in figures["explore"]["cases"].items()]
    rows.append(("explore: ALL p50 / p95",
                 f"{figures['explore']['p50_ms']:.0f} / {figures['explore']['p95_ms']:.0f}"))
    rows += [(f"insights: {name}", ms) for name, ms in figures["insights_ms"].items()]
    rows.append(("bench process peak RSS (MiB)", figures["bench_process_peak_rss_mib"]))
    for name, value in figures.get("browser", {}).items():
        rows.append((f"browser: {name}", value))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  ms (or as named)")
    for name, value in rows:
        shown = f"{value:,.0f}" if isinstance(value, float | int) else value
        print(f"{name:<{width}}  {shown}")


if __name__ == "__main__":
    main()
