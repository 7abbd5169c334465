"""What each job kind runs. The worker dispatches on ``jobs.kind`` through ``KINDS`` and never
special-cases a kind; a kind's runner returns the run id it produced."""

from __future__ import annotations

import dataclasses
from typing import Callable

from audit.settings import Settings
from audit.store import Store
from jobs.reporter import JobReporter


@dataclasses.dataclass(frozen=True)
class JobContext:
    store: Store
    settings: Settings
    job_id: int
    dataset_id: int
    config: dict
    reporter: JobReporter


def run_audit_job(context: JobContext) -> int:
    """Run the audit plan, reporting through the job; raises ``Cancelled`` when stopped."""
    from audit.plan import run_audit  # heavy (torch): only workers load it

    reporter = context.reporter
    return run_audit(context.store, context.settings, context.dataset_id, context.config,
                     progress=reporter.progress, should_cancel=reporter.should_cancel,
                     job_id=context.job_id, log=reporter.log)


KINDS: dict[str, Callable[[JobContext], int]] = {"audit": run_audit_job}
