"""Writing test manifests: the rows as a CSV, plus truncated image files that fail to decode."""

from __future__ import annotations

import csv
from pathlib import Path


def write_manifest(folder: Path, rows: list[dict], broken: int = 0,
                   broken_label: str = "1") -> Path:
    """``folder/manifest.csv`` of ``rows`` (id, path, label), after ``broken`` truncated PNGs."""
    rows = list(rows)
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"\x89PNG truncated")
        rows.append({"id": f"broken{i}", "path": f"broken{i}.png", "label": broken_label})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
