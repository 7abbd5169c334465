"""The two entry points: ``preview_export`` (counts, no files) and ``export_dataset``.

``preview_export`` is the one preview: the Export page shows its tables and
``python -m audit export --dry-run`` prints ``ExportPreview.text()``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import pandas as pd

from audit.export.inputs import LoadedExport, load_inputs
from audit.export.outcomes import build_plan, count_table, rule_table, split_table
from audit.export.provenance import build_provenance, counts_summary, write_provenance
from audit.export.rules import ExportRules, check_format, split_rule_text
from audit.export.staging import (
    PROVENANCE_NAME, check_out_dir, publish, staging_dir, written_files,
)
from audit.export.writers import WriteReport, rows_to_write, write_export
from audit.store import Store
from audit.store.exports import record_export

Progress = Callable[[float, str], None]


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """A finished export: where it is, its counts per split and class, and what was left out."""

    out_dir: Path
    fmt: str
    export_id: int
    run_id: int | None
    counts: pd.DataFrame
    totals: dict
    rows_written: int
    skipped_files: int
    weights: bool
    zero_weight: int = 0

    @property
    def provenance_path(self) -> Path:
        return self.out_dir / PROVENANCE_NAME

    def summary(self) -> str:
        """One line of words, e.g. for the CLI."""
        t = self.totals
        written = (f"{self.rows_written} rows with sample weights ({self.zero_weight} at "
                   "weight 0)" if self.weights else f"{self.rows_written} examples")
        skipped = f"; {self.skipped_files} files left out (see {PROVENANCE_NAME})" \
            if self.skipped_files else ""
        return (f"wrote {written} as {self.fmt} from {t['before']} "
                f"(removed {t['removed']}, relabelled {t['relabelled']}){skipped}")


def plan_export(store: Store, dataset_id: int, rules: ExportRules) -> pd.DataFrame:
    """One row per selected example: its action (keep / relabel / remove), new label, reason."""
    return build_plan(load_inputs(store, dataset_id, rules).inputs)


@dataclasses.dataclass(frozen=True)
class ExportPreview:
    """What an export with these rules would write; the page's tables and the CLI's text.

    by_split: before, removed, relabelled, weighted, after and written per split;
    by_rule: per split and deciding rule, the rows it removed, relabelled, weighted, kept;
    by_class: per split and class, before, kept, removed, relabelled (away from the class),
    relabelled_in (to it), after and weighted (kept rows written with a weight below 1);
    split_rule: which splits the automatic rules act on, in words."""

    by_split: pd.DataFrame
    by_rule: pd.DataFrame
    by_class: pd.DataFrame
    split_rule: str

    def text(self) -> str:
        return "\n\n".join([
            self.split_rule,
            "Per split:\n" + _table_text(self.by_split),
            "Per split and rule:\n" + _table_text(self.by_rule),
            "Per split and class:\n" + _table_text(self.by_class),
        ])


def _table_text(table: pd.DataFrame) -> str:
    return table.to_string(index=False) if len(table) else "(no rows)"


def preview_export(store: Store, dataset_id: int, rules: ExportRules) -> ExportPreview:
    """What the export would write (see ``ExportPreview``). Writes nothing."""
    plan = plan_export(store, dataset_id, rules)
    return ExportPreview(split_table(plan, rules.weights), rule_table(plan), count_table(plan),
                         split_rule_text(rules))


def export_dataset(store: Store, settings, dataset_id: int, out_dir: Path, fmt: str,
                   rules: ExportRules, overwrite: bool = False,
                   progress: Progress | None = None) -> ExportResult:
    """Write the cleaned dataset to ``out_dir`` (staged, then moved into place) and record it.

    From ``settings`` it reads ``follow_outside_links``: a sample's link that leads outside
    the dataset folder is exported only when ingestion would accept it."""
    check_format(fmt, rules)
    loaded = load_inputs(store, dataset_id, rules)
    out = check_out_dir(Path(out_dir), Path(loaded.dataset.root), overwrite)
    plan = build_plan(loaded.inputs)
    rows = rows_to_write(plan, loaded.inputs.samples, rules.weights)
    counts = count_table(plan)
    with staging_dir(out) as stage:
        report = write_export(rows, Path(loaded.dataset.root).resolve(), stage, fmt,
                              progress or _quiet, settings.follow_outside_links)
        document = _provenance(loaded, fmt, plan, counts, report, rows, written_files(stage))
        write_provenance(stage, document, PROVENANCE_NAME)
        publish(stage, out, overwrite)
    export_id = record_export(store, loaded.dataset.id, _run_id(loaded), str(out), fmt,
                              rules.to_dict(), _stored_counts(plan, counts))
    return ExportResult(out, fmt, export_id, _run_id(loaded), counts,
                        counts_summary(plan, counts)["total"], len(rows), len(report.skipped),
                        rules.weights, _zero_weight(rows))


def _quiet(fraction: float, message: str) -> None:
    return None


def _zero_weight(rows: pd.DataFrame) -> int:
    """Rows written at sample_weight 0: removed ones, and kept ones whose scores give 0."""
    if "sample_weight" not in rows.columns:
        return 0
    return int((rows["sample_weight"] == 0).sum())


def _run_id(loaded: LoadedExport) -> int | None:
    return None if loaded.run is None else int(loaded.run["id"])


def _provenance(loaded: LoadedExport, fmt: str, plan: pd.DataFrame, counts: pd.DataFrame,
                report: WriteReport, rows: pd.DataFrame, written: list[str]) -> dict:
    return build_provenance(
        dataset=loaded.dataset, run=loaded.run, detectors=loaded.detectors, fmt=fmt,
        rules=loaded.inputs.rules, plan=plan, counts=counts, report=report,
        samples=loaded.inputs.samples, rows=rows, written=written,
        suggestion_thresholds=loaded.suggestion_thresholds,
    )


def _stored_counts(plan: pd.DataFrame, counts: pd.DataFrame) -> dict:
    summary = counts_summary(plan, counts)
    return {"total": summary["total"], "per_split": summary["per_split"]}
