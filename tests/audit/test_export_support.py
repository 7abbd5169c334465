"""Helpers shared by the export tests (no tests here): real PNGs, manifests, runs, digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from audit.ingest import ingest
from audit.store.runs import create_run, finish_run, write_scores


def write_png(path: Path, seed: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def small_manifest(root: Path, n: int = 12, name: str = "manifest.jsonl") -> Path:
    """n PNGs under root/img with a JSONL manifest: captions, splits, extra columns."""
    rows = []
    for i in range(n):
        write_png(root / "img" / f"{i:03d}.png", seed=i)
        rows.append({"id": f"s{i:02d}", "path": f"img/{i:03d}.png",
                     "label": ("cat", "dog")[i % 2], "split": ("train", "train", "test")[i % 3],
                     "caption": f"picture {i}", "source": f"cam{i % 4}", "rating": i})
    manifest = root / name
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def ingest_small(store, settings, root: Path, n: int = 12, name: str = "small") -> int:
    return ingest(store, small_manifest(root, n), settings, name=name)


def succeeded_run(store, dataset_id: int, rows: list[tuple], config: dict | None = None) -> int:
    """A finished run holding (sample_id, detector, score, is_issue, details-dict) rows."""
    run_id = create_run(store, dataset_id, config or {"detectors": "synthetic"})
    frame = pd.DataFrame(rows, columns=["sample_id", "detector", "score", "is_issue", "details"])
    frame["details"] = [json.dumps(d) if d is not None else None for d in frame["details"]]
    write_scores(store, run_id, frame)
    finish_run(store, run_id, "succeeded")
    return run_id


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime_ns) of every file under root."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
