"""Where every benchmark writes its figures: one JSON file under bench/out/ (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUT = PROJECT_ROOT / "bench" / "out"


def save_figures(stem: str, figures: dict) -> Path:
    """Write ``figures`` to bench/out/<stem>.json and say where."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{stem}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"figures written to {path.relative_to(PROJECT_ROOT)}")
    return path
