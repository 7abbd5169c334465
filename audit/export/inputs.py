"""Loading what an export plan reads from the store, checking the rules against it.

Each read is one short transaction; nothing is held while the plan is computed or files are
written. Rules that name a run, detectors or splits the dataset does not have are refused
here with the names that do exist.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from audit.errors import ConfigError, NotFoundError
from audit.export.plan import PlanInputs, confident_thresholds
from audit.export.rules import ENGINE_CONFIDENCE, ExportRules
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
    "suggestions": ["sample_id", "suggested_label", "suggested_confidence", "min_confidence"],
}


@dataclasses.dataclass
class LoadedExport:
    dataset: DatasetRecord
    run: dict | None
    detectors: list[str]
    inputs: PlanInputs
    suggestion_thresholds: dict[str, float] | None = None


def load_inputs(store: Store, dataset_id: int, rules: ExportRules) -> LoadedExport:
    """The dataset, its run and everything the plan needs, with the rules checked against them."""
    dataset = get_dataset(store, dataset_id)
    samples = samples_frame(store, dataset.id)
    _check_splits(dataset, samples, rules.splits)
    run_id = _resolve_run(store, dataset, rules)
    run = get_run(store, run_id) if run_id is not None else None
    detectors = _resolve_detectors(store, run_id, rules) if run_id is not None else []
    thresholds = _suggestion_thresholds(store, run, samples, rules)
    inputs = PlanInputs(
        samples=samples, decisions=current_decisions(store, dataset.id),
        flags=_flags(store, run_id, detectors, rules),
        duplicates=_duplicates(store, run_id, rules),
        suggestions=_suggestions(store, run_id, rules, thresholds), rules=rules,
    )
    return LoadedExport(dataset, run, detectors, inputs, thresholds)


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


def _suggestions(store: Store, run_id: int | None, rules: ExportRules,
                 thresholds: dict[str, float] | None) -> pd.DataFrame:
    """The run's label suggestions, each with the confidence it needs to apply."""
    if run_id is None or rules.apply_suggested is None:
        return pd.DataFrame(columns=_EMPTY["suggestions"])
    suggestions = label_suggestions(store, run_id)
    if thresholds is None:
        return suggestions.assign(min_confidence=float(rules.apply_suggested))
    return suggestions.assign(min_confidence=suggestions["suggested_label"].map(thresholds))


def _suggestion_thresholds(store: Store, run: dict | None, samples: pd.DataFrame,
                           rules: ExportRules) -> dict[str, float] | None:
    """With apply_suggested "auto": confident learning's threshold per class, from the run's
    label_issue self-confidence scores (see ``confident_thresholds``)."""
    if run is None or rules.apply_suggested != ENGINE_CONFIDENCE:
        return None
    _check_self_confidence(run)
    scores = detector_flags(store, int(run["id"]), [SUGGESTING_DETECTOR])
    return confident_thresholds(scores, samples)


def _check_self_confidence(run: dict) -> None:
    from audit.detectors.label_issue import LabelIssue

    config = json.loads(run["config"]) if isinstance(run["config"], str) else run["config"] or {}
    chosen = ((config.get("params") or {}).get(SUGGESTING_DETECTOR) or {}).get("method")
    method = chosen or LabelIssue.params["method"]
    if method != "self_confidence":
        raise ConfigError(
            f"run {run['id']} scored {SUGGESTING_DETECTOR} with method {method!r}, whose scores "
            f"are not the class probabilities that apply_suggested {ENGINE_CONFIDENCE!r} reads; "
            "give a minimum confidence instead, e.g. --apply-suggested 0.9"
        )
