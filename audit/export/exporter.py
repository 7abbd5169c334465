"""The two entry points: ``preview_export`` (counts, no files) and ``export_dataset``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import pandas as pd

from audit.export.inputs import LoadedExport, load_inputs
from audit.export.plan import build_plan, count_table
from audit.export.provenance import build_provenance, counts_summary, write_provenance
from audit.export.rules import ExportRules, check_format
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

    @property
    def provenance_path(self) -> Path:
        return self.out_dir / PROVENANCE_NAME

    def summary(self) -> str:
        """One line of words, e.g. for the CLI."""
        t = self.totals
        written = (f"{self.rows_written} rows with sample weights ({t['removed']} at weight 0)"
                   if self.weights else f"{self.rows_written} examples")
        skipped = f"; {self.skipped_files} files left out (see {PROVENANCE_NAME})" \
            if self.skipped_files else ""
        return (f"wrote {written} as {self.fmt} from {t['before']} "
                f"(removed {t['removed']}, relabelled {t['relabelled']}){skipped}")


def plan_export(store: Store, dataset_id: int, rules: ExportRules) -> pd.DataFrame:
    """One row per selected example: its action (keep / relabel / remove), new label, reason."""
    return build_plan(load_inputs(store, dataset_id, rules).inputs)


def preview_export(store: Store, dataset_id: int, rules: ExportRules) -> pd.DataFrame:
    """What the export would write, per split and class: before, kept, removed, relabelled
    (away from this class), relabelled_in (to it) and after. Writes no files."""
    return count_table(plan_export(store, dataset_id, rules))


def export_dataset(store: Store, settings, dataset_id: int, out_dir: Path, fmt: str,
                   rules: ExportRules, overwrite: bool = False,
                   progress: Progress | None = None) -> ExportResult:
    """Write the cleaned dataset to ``out_dir`` (staged, then moved into place) and record it.

    ``settings`` is taken for symmetry with the other entry points; the export reads nothing
    from it beyond what ``store`` already holds."""
    check_format(fmt, rules)
    loaded = load_inputs(store, dataset_id, rules)
    out = check_out_dir(Path(out_dir), Path(loaded.dataset.root), overwrite)
    plan = build_plan(loaded.inputs)
    rows = rows_to_write(plan, loaded.inputs.samples, rules.weights)
    counts = count_table(plan)
    with staging_dir(out) as stage:
        report = write_export(rows, Path(loaded.dataset.root).resolve(), stage, fmt,
                              progress or _quiet)
        document = _provenance(loaded, fmt, plan, counts, report, rows, written_files(stage))
        write_provenance(stage, document, PROVENANCE_NAME)
        publish(stage, out, overwrite)
    export_id = record_export(store, loaded.dataset.id, _run_id(loaded), str(out), fmt,
                              rules.to_dict(), _stored_counts(plan, counts))
    return ExportResult(out, fmt, export_id, _run_id(loaded), counts,
                        counts_summary(plan, counts)["total"], len(rows), len(report.skipped),
                        rules.weights)


def _quiet(fraction: float, message: str) -> None:
    return None


def _run_id(loaded: LoadedExport) -> int | None:
    return None if loaded.run is None else int(loaded.run["id"])


def _provenance(loaded: LoadedExport, fmt: str, plan: pd.DataFrame, counts: pd.DataFrame,
                report: WriteReport, rows: pd.DataFrame, written: list[str]) -> dict:
    return build_provenance(
        dataset=loaded.dataset, run=loaded.run, detectors=loaded.detectors, fmt=fmt,
        rules=loaded.inputs.rules, plan=plan, counts=counts, report=report,
        samples=loaded.inputs.samples, rows=rows, written=written,
    )


def _stored_counts(plan: pd.DataFrame, counts: pd.DataFrame) -> dict:
    summary = counts_summary(plan, counts)
    return {"total": summary["total"], "per_split": summary["per_split"]}
