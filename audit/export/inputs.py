"""Loading what an export plan reads from the store, checking the rules against it.

Each read is one short transaction; nothing is held while the plan is computed or files are
written. Rules that name a run, detectors or splits the dataset does not have are refused
here with the names that do exist.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from audit.errors import ConfigError, NotFoundError
from audit.export.plan import PlanInputs
from audit.export.rules import ExportRules
from audit.store import Store
from audit.store.datasets import DatasetRecord, get_dataset, samples_frame
from audit.store.exports import (
    DUPLICATE_DETECTOR, SUGGESTING_DETECTOR, detector_flags, duplicate_sets, label_suggestions,
    run_detectors,
)
from audit.store.flags import current_decisions
from audit.store.runs import get_run, latest_finished_run

_EMPTY = {
    "flags": ["sample_id", "detector", "score", "is_issue", "suggests_label"],
    "duplicates": ["sample_id", "set_id", "duplicate_of", "leak"],
    "suggestions": ["sample_id", "suggested_label", "suggested_confidence"],
}


@dataclasses.dataclass
class LoadedExport:
    dataset: DatasetRecord
    run: dict | None
    detectors: list[str]
    inputs: PlanInputs


def load_inputs(store: Store, dataset_id: int, rules: ExportRules) -> LoadedExport:
    """The dataset, its run and everything the plan needs, with the rules checked against them."""
    dataset = get_dataset(store, dataset_id)
    samples = samples_frame(store, dataset.id)
    _check_splits(dataset, samples, rules.splits)
    run_id = _resolve_run(store, dataset, rules)
    detectors = _resolve_detectors(store, run_id, rules) if run_id is not None else []
    inputs = PlanInputs(
        samples=samples, decisions=current_decisions(store, dataset.id),
        flags=_flags(store, run_id, detectors, rules),
        duplicates=_duplicates(store, run_id, rules),
        suggestions=_suggestions(store, run_id, rules), rules=rules,
    )
    run = get_run(store, run_id) if run_id is not None else None
    return LoadedExport(dataset, run, detectors, inputs)


def _check_splits(dataset: DatasetRecord, samples: pd.DataFrame, splits: list[str] | None) -> None:
    present = sorted(samples["split"].unique())
    missing = sorted(set(splits or []) - set(present))
    if missing:
        raise ConfigError(
            f"dataset {dataset.name!r} has no {', '.join(map(repr, missing))} split; "
            f"it has {', '.join(present)}: choose among those"
        )


def _resolve_run(store: Store, dataset: DatasetRecord, rules: ExportRules) -> int | None:
    if rules.run_id is None:
        run_id = latest_finished_run(store, dataset.id)
        if run_id is None and rules.needs_scores:
            raise ConfigError(
                f"dataset {dataset.name!r} has no succeeded audit run, which the chosen rules "
                f"need; run `python -m audit run {dataset.name}` first, or export with reviewed "
                "decisions only"
            )
        return run_id
    run = _run_of(store, dataset, rules.run_id)
    if run["status"] != "succeeded":
        raise ConfigError(f"run {rules.run_id} is {run['status']}, not succeeded; choose a "
                          "finished run or leave the run out to use the latest")
    return rules.run_id


def _run_of(store: Store, dataset: DatasetRecord, run_id: int) -> dict:
    missing = NotFoundError(f"dataset {dataset.name!r} has no run {run_id}; "
                            "see its runs with `python -m audit jobs`")
    try:
        run = get_run(store, run_id)
    except NotFoundError as exc:
        raise missing from exc
    if run["dataset_id"] != dataset.id:
        raise missing
    return run


def _resolve_detectors(store: Store, run_id: int, rules: ExportRules) -> list[str]:
    available = run_detectors(store, run_id)
    unknown = sorted(set(rules.detectors or []) - set(available))
    if unknown:
        raise ConfigError(f"run {run_id} has no scores from {unknown}; choose among {available}")
    _require(DUPLICATE_DETECTOR, available, run_id,
             rules.dedupe or rules.leakage != "keep", "dedupe and leakage rules")
    _require(SUGGESTING_DETECTOR, available, run_id,
             rules.apply_suggested is not None, "apply_suggested")
    if rules.detectors:
        return list(rules.detectors)
    return [name for name in available if name != DUPLICATE_DETECTOR]


def _require(detector: str, available: list[str], run_id: int, needed: bool, what: str) -> None:
    if needed and detector not in available:
        raise ConfigError(
            f"run {run_id} has no {detector} scores, which {what} need; rerun the audit with "
            f"{detector}, or leave {what} out"
        )


def _flags(store: Store, run_id: int | None, detectors: list[str],
           rules: ExportRules) -> pd.DataFrame:
    if run_id is None or not (rules.include_flagged or rules.weights) or not detectors:
        return pd.DataFrame(columns=_EMPTY["flags"])
    return detector_flags(store, run_id, detectors, flagged_only=not rules.weights,
                          threshold=rules.threshold)


def _duplicates(store: Store, run_id: int | None, rules: ExportRules) -> pd.DataFrame:
    if run_id is None or not (rules.dedupe or rules.leakage != "keep"):
        return pd.DataFrame(columns=_EMPTY["duplicates"])
    return duplicate_sets(store, run_id)


def _suggestions(store: Store, run_id: int | None, rules: ExportRules) -> pd.DataFrame:
    if run_id is None or rules.apply_suggested is None:
        return pd.DataFrame(columns=_EMPTY["suggestions"])
    return label_suggestions(store, run_id)
