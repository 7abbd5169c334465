"""What each job kind runs. The worker dispatches on ``jobs.kind`` through ``KINDS`` and never
special-cases a kind. A runner takes the job's context (its JSON payload is ``config``) and
returns its JSON result; ``run_id`` and ``dataset_id`` in a result also fill the job's columns.

Every runner reports progress through the job and stops at the next report once a cancel is
requested (``Cancelled``); ingest and export write all or nothing, so a stop leaves no trace.
Model libraries load only inside the audit runner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from audit.errors import Cancelled
from audit.settings import Settings
from audit.store import Store
from audit.store import jobs as job_store
from jobs.reporter import JobReporter

AUDIT, INGEST, EXPORT = "audit", "ingest", "export"


@dataclasses.dataclass(frozen=True)
class JobContext:
    store: Store
    settings: Settings
    job_id: int
    dataset_id: int | None
    config: dict
    reporter: JobReporter

    def progress(self, fraction: float, message: str) -> None:
        """Report progress; raise ``Cancelled`` once the job was asked to stop."""
        if self.reporter.should_cancel():
            raise Cancelled(f"job {self.job_id} cancelled")
        self.reporter.progress(fraction, message)


def run_audit_job(context: JobContext) -> dict:
    """Run the audit plan on the job's device; raises ``Cancelled`` when stopped."""
    from audit.embedders.clip import resolve_device  # heavy (torch): only workers load it
    from audit.plan import run_audit

    device = resolve_device(str(context.config.get("device") or context.settings.device))
    job_store.set_device(context.store, context.job_id, device)
    context.reporter.log(f"device {device}")
    reporter = context.reporter
    run_id = run_audit(context.store, context.settings, context.dataset_id,
                       {**context.config, "device": device}, progress=reporter.progress,
                       should_cancel=reporter.should_cancel, job_id=context.job_id,
                       log=reporter.log)
    return {"run_id": run_id}


def run_ingest_job(context: JobContext) -> dict:
    """Ingest the payload's source as a dataset (or a new version of one), its images read on
    the payload's executor (the settings' when it names none); the result says which."""
    from audit.executors import executor_for
    from audit.hf_datasets import HFColumns
    from audit.ingest import ingest

    payload = context.config
    with executor_for(payload.get("executor") or context.settings.executor,
                      payload.get("ray_address", context.settings.ray_address), None,
                      context.reporter.should_cancel) as executor:
        dataset_id = ingest(context.store, Path(payload["source"]), context.settings,
                            name=payload.get("name"), progress=context.progress,
                            columns=HFColumns(**payload.get("columns", {})),
                            new_version=bool(payload.get("new_version")), executor=executor)
    return {"dataset_id": dataset_id, "executor": executor.facts}


def run_export_job(context: JobContext) -> dict:
    """Write the cleaned dataset to the payload's folder; the result says where and what."""
    from audit.export import ExportRules, export_dataset

    payload = context.config
    result = export_dataset(context.store, context.settings, context.dataset_id,
                            Path(payload["out_dir"]), payload["format"],
                            ExportRules(**payload["rules"]),
                            overwrite=bool(payload.get("overwrite")), progress=context.progress)
    return {"out_dir": str(result.out_dir), "format": result.fmt, "export_id": result.export_id,
            "scores_run_id": result.run_id, "rows_written": result.rows_written,
            "skipped_files": result.skipped_files, "summary": result.summary()}


KINDS: dict[str, Callable[[JobContext], dict]] = {
    AUDIT: run_audit_job, INGEST: run_ingest_job, EXPORT: run_export_job,
}
