"""``sieve_export.json``: how an export was made, written beside the data.

It names the dataset and run, the rules and thresholds, counts kept / removed / relabelled
per split and class, every changed example with its reason, the files left out and why,
where files were linked or copied, every file the export wrote (what ``--overwrite`` may
replace), the software versions and the time.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

from audit.export.outcomes import PRECEDENCE, WEIGHT_FORMULA
from audit.export.rules import ExportRules
from audit.export.writers import WriteReport
from audit.versions import software_versions

PROVENANCE_VERSION = 2


def totals(plan: pd.DataFrame) -> dict:
    """Examples considered, kept, removed and relabelled, over the whole export."""
    relabelled = (plan["action"] == "relabel") & (plan["new_label"] != plan["label"])
    removed = int((plan["action"] == "remove").sum())
    return {"before": len(plan), "removed": removed, "relabelled": int(relabelled.sum()),
            "after": len(plan) - removed}


def counts_summary(plan: pd.DataFrame, counts: pd.DataFrame) -> dict:
    """Totals, per split and per split and class, as plain JSON values."""
    per_split = {split: totals(part) for split, part in plan.groupby("split", sort=False)}
    return {"total": totals(plan), "per_split": per_split,
            "per_class": counts.to_dict("records")}


def build_provenance(*, dataset, run: dict | None, detectors: list[str], fmt: str,
                     rules: ExportRules, plan: pd.DataFrame, counts: pd.DataFrame,
                     report: WriteReport, samples: pd.DataFrame, rows: pd.DataFrame,
                     written: list[str], suggestion_thresholds: dict | None = None) -> dict:
    """The provenance document for one export; ``written`` lists every file beside it."""
    return {
        "sieve_export": PROVENANCE_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"id": dataset.id, "name": dataset.name, "source": dataset.source,
                    "kind": dataset.kind, "root": dataset.root},
        "run": _run_facts(run),
        "format": fmt,
        "rules": rules.to_dict(),
        "thresholds": {"detectors": detectors, "threshold": rules.threshold,
                       "apply_suggested": rules.apply_suggested,
                       "suggestion_thresholds": suggestion_thresholds},
        "precedence": PRECEDENCE,
        "weight_formula": WEIGHT_FORMULA if rules.weights else None,
        "counts": counts_summary(plan, counts),
        "changed": _changed(plan, samples),
        "load_errors": _load_errors(rows, fmt),
        "skipped_files": report.skipped,
        "files": {"tables": report.tables, "hard_links": report.links, "copies": report.copies,
                  "label_folders": report.label_folders, "written": written},
        "versions": software_versions(),
    }


def _run_facts(run: dict | None) -> dict | None:
    if run is None:
        return None
    keys = ("id", "status", "config", "model_ids", "code_version", "finished_at")
    return {key: _json_field(run.get(key)) for key in keys}


def _json_field(value):
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value if value is None or isinstance(value, (int, float)) else str(value)


def _changed(plan: pd.DataFrame, samples: pd.DataFrame) -> list[dict]:
    changed = plan[plan["action"] != "keep"]
    paths = samples.set_index("sample_id")["path"]
    return [
        {"sample_id": r.sample_id, "split": r.split, "label": r.label,
         "new_label": r.new_label if r.action == "relabel" else None,
         "action": r.action, "reason": r.reason, "path": paths.get(r.sample_id)}
        for r in changed.itertuples(index=False)
    ]


def _load_errors(rows: pd.DataFrame, fmt: str) -> list[dict]:
    handling = ("left out of the image folder" if fmt == "imagefolder"
                else "kept in the manifest with its load_error")
    broken = rows[rows["load_error"].notna()]
    return [{"sample_id": s, "path": p, "load_error": e, "handling": handling}
            for s, p, e in zip(broken["sample_id"], broken["path"], broken["load_error"])]


def write_provenance(stage: Path, document: dict, name: str) -> Path:
    path = stage / name
    with open(path, "x", encoding="utf-8") as out:
        json.dump(document, out, indent=1, ensure_ascii=False, default=str)
        out.write("\n")
    return path
