"""Export speed: preview (counts only) and a full export, on synthetic datasets in a temp store.

Samples are written straight into a real DuckDB store (small real files on disk, 64 bytes
each: an export links or copies bytes, it never decodes them), with a succeeded run holding
five detectors' scores, a near-duplicate detector with sets and leaks, label suggestions,
and reviewed decisions for 1% of the samples. Rules: every detector flags, suggestions at
0.9, dedupe, leakage from the test side.

The Export page is timed under Streamlit's AppTest (the script runs as it does in the
browser, minus the network) on its own dataset: opening it, a rerun that changes nothing the
preview depends on (typing the output folder), the Export click, a rerun after the export
(ticking a checkbox) and the zip that the download button builds when clicked.

    python -m bench.bench_export                    # 100k preview, 20k export, 200k page
    python -m bench.bench_export --sizes 10000 --export-size 5000 --page-size 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from audit.export import ExportRules, export_dataset, preview_export
from audit.export.archive import zipped
from audit.settings import load_settings
from audit.store import Store
from audit.store.datasets import SAMPLE_COLUMNS, create_dataset
from audit.store.flags import Decision, record_decisions
from audit.store.runs import create_run, finish_run, write_scores
from bench import markdown_table

PAGE = Path(__file__).resolve().parents[1] / "dashboard" / "pages" / "export.py"
DETECTORS = ["label_issue", "knn_label", "outlier", "image_quality", "overall"]
RULES = ExportRules(include_flagged=True, apply_suggested=0.9, dedupe=True, leakage="test",
                    auto_splits=["train", "val", "test"])  # every split: the most work


def synthetic_dataset(store: Store, root: Path, n: int, with_files: bool, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    ids = [f"s{i:07d}" for i in range(n)]
    paths = [f"img/{i // 1000:04d}/{i:07d}.png" for i in range(n)]
    if with_files:
        for path in paths:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(rng.bytes(64))
    frame = pd.DataFrame({
        "sample_id": ids, "row_index": range(n), "path": paths,
        "split": np.where(rng.random(n) < 0.2, "test", "train"),
        "label": rng.choice([f"class{k}" for k in range(10)], n), "caption": None,
        "width": 32, "height": 32, "file_size": 64, "sha256": None, "load_error": None,
        "extra": json.dumps({"source": "bench"}),
    })
    dataset_id = create_dataset(store, f"bench-{n}-{with_files}", str(root), "manifest",
                                str(root), frame[SAMPLE_COLUMNS])
    _scores(store, dataset_id, ids, rng)
    picks = rng.choice(n, n // 100, replace=False)
    decisions = [Decision(ids[i], ("remove", "keep")[i % 2]) for i in picks]
    record_decisions(store, dataset_id, decisions)
    return dataset_id


def _scores(store: Store, dataset_id: int, ids: list[str], rng: np.random.Generator) -> None:
    run_id = create_run(store, dataset_id, {"bench": True})
    n = len(ids)
    for detector in DETECTORS:
        score = rng.random(n)
        details = [json.dumps({"suggested_label": "class0", "suggested_confidence": float(s)})
                   if detector == "label_issue" else None for s in 1 - score]
        write_scores(store, run_id, pd.DataFrame({"sample_id": ids, "detector": detector,
                                                  "score": score, "is_issue": score < 0.02,
                                                  "details": details}))
    members = rng.choice(n, n // 50, replace=False)
    write_scores(store, run_id, pd.DataFrame({
        "sample_id": [ids[i] for i in members], "detector": "near_duplicate", "score": 0.01,
        "is_issue": True,
        "details": [json.dumps({"set_id": f"d{k // 2}", "leak": bool(k % 10 == 0)})
                    for k in range(len(members))]}))
    finish_run(store, run_id, "succeeded")


def timed(action) -> tuple[object, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def page_clicks(base: Path, n: int) -> list[dict]:
    """The Export page's interactions on an n-row dataset with files, each timed."""
    from streamlit.testing.v1 import AppTest

    home = base / "page-data"
    os.environ.update(AUDIT_DATA_HOME=str(home), AUDIT_CONFIG=str(base / "absent.toml"))
    settings = load_settings()
    dataset_id = synthetic_dataset(Store.from_settings(settings), base / "page-src", n, True)
    page = AppTest.from_file(str(PAGE), default_timeout=1800)
    page.session_state["dataset_id"] = dataset_id
    out = base / "page-out"
    steps = [("open the page", lambda: page),
             ("type the output folder", lambda: page.text_input(key="export_out").input(str(out))),
             ("click Export", lambda: page.button(key="export_go").click()),
             ("tick a checkbox after the export",
              lambda: page.checkbox(key="export_overwrite").check())]
    rows = []
    for what, action in steps:
        _, seconds = timed(lambda: action().run())
        assert not page.exception, [e.value for e in page.exception]
        rows.append({"what": f"page: {what}", "samples": n, "seconds": seconds, "removed": "-",
                     "files/s": "-"})
    archive, seconds = timed(lambda: zipped(out))
    rows.append({"what": f"page: build the zip on download ({len(archive) / 2**20:.0f} MiB)",
                 "samples": n, "seconds": seconds, "removed": "-", "files/s": "-"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--export-size", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=200_000, help="0: skip the page")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = load_settings(toml_path=base / "absent.toml",
                                 env={"AUDIT_DATA_HOME": str(base / "data")})
        store = Store.from_settings(settings)
        for n in args.sizes:
            dataset_id = synthetic_dataset(store, base / f"p{n}", n, with_files=False)
            counts, seconds = timed(lambda: preview_export(store, dataset_id, RULES))
            rows.append({"what": "preview_export", "samples": n, "seconds": seconds,
                         "removed": int(counts.by_split["removed"].sum()), "files/s": "-"})
        n = args.export_size
        dataset_id = synthetic_dataset(store, base / "src", n, with_files=True)
        for fmt in ("parquet", "imagefolder"):
            result, seconds = timed(lambda: export_dataset(
                store, settings, dataset_id, base / f"out-{fmt}", fmt, RULES))
            rows.append({"what": f"export {fmt}", "samples": n, "seconds": seconds,
                         "removed": result.totals["removed"],
                         "files/s": f"{result.rows_written / seconds:,.0f}"})
        if args.page_size:
            rows += page_clicks(base, args.page_size)
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(markdown_table(pd.DataFrame(rows), digits=2))


if __name__ == "__main__":
    main()
