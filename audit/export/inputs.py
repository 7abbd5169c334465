"""Loading what an export plan reads from the store, checking the rules against it.

Each read is one short transaction; nothing is held while the plan is computed or files are
written. Rules that name a run, detectors or splits the dataset does not have are refused
here with the names that do exist. Which detectors are about labels, hold duplicate sets or
suggest labels is read from the facts the run recorded (``DetectorKinds``), never by name.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from audit.detectors import catalogue
from audit.errors import ConfigError, NotFoundError
from audit.export.outcomes import PlanInputs, confident_thresholds
from audit.export.rules import ENGINE_CONFIDENCE, ExportRules
from audit.store import Store
from audit.store.datasets import DatasetRecord, get_dataset, samples_frame
from audit.store.exports import detector_flags, duplicate_sets, label_suggestions, run_detectors
from audit.store.flags import current_decisions
from audit.store.runs import get_run, latest_finished_run, run_detector_facts

_EMPTY = {
    "flags": ["sample_id", "detector", "score", "is_issue", "suggests_label"],
    "duplicates": ["sample_id", "set_id", "duplicate_of", "leak"],
    "suggestions": ["sample_id", "detector", "suggested_label", "suggested_confidence",
                    "min_confidence"],
}
# What each kind of detector is, as a test of its recorded facts, and what to call it
KINDS = {
    "label": (lambda facts: facts.get("family") == "label", "a label detector"),
    "duplicate": (lambda facts: facts.get("family") == "duplicate", "a duplicate detector"),
    "suggesting": (lambda facts: bool(facts.get("suggests_labels")),
                   "a detector that suggests labels"),
    "held_out_suggesting": (
        lambda facts: bool(facts.get("suggests_labels")) and facts.get("belief") == "held_out",
        "a detector that suggests labels from held-out probabilities"),
}


@dataclasses.dataclass(frozen=True)
class DetectorKinds:
    """A run's detectors by kind (``KINDS``), from the facts the run recorded."""

    facts: dict[str, dict]

    def of(self, kind: str) -> list[str]:
        matches = KINDS[kind][0]
        return sorted(name for name, facts in self.facts.items() if matches(facts))


@dataclasses.dataclass
class LoadedExport:
    dataset: DatasetRecord
    run: dict | None
    detectors: list[str]
    inputs: PlanInputs
    suggestion_thresholds: dict[str, dict[str, float]] | None = None


def load_inputs(store: Store, dataset_id: int, rules: ExportRules) -> LoadedExport:
    """The dataset, its run and everything the plan needs, with the rules checked against them."""
    dataset = get_dataset(store, dataset_id)
    samples = samples_frame(store, dataset.id)
    _check_splits(dataset, samples, rules.splits)
    run_id = _resolve_run(store, dataset, rules)
    run = get_run(store, run_id) if run_id is not None else None
    kinds = DetectorKinds(run_detector_facts(store, run_id) if run_id is not None else {})
    detectors = _resolve_detectors(store, run_id, rules, kinds) if run_id is not None else []
    thresholds = _suggestion_thresholds(store, run, samples, rules, kinds)
    inputs = PlanInputs(
        samples=samples, decisions=current_decisions(store, dataset.id),
        flags=_flags(store, run_id, detectors, rules),
        duplicates=_duplicates(store, run_id, rules, kinds.of("duplicate")),
        suggestions=_suggestions(store, run_id, rules, thresholds, kinds.of("suggesting")),
        rules=rules, label_detectors=frozenset(kinds.of("label")),
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


def _resolve_detectors(store: Store, run_id: int, rules: ExportRules,
                       kinds: DetectorKinds) -> list[str]:
    available = run_detectors(store, run_id)
    unknown = sorted(set(rules.detectors or []) - set(available))
    if unknown:
        raise ConfigError(f"run {run_id} has no scores from {unknown}; choose among {available}")
    _require(kinds, "duplicate", run_id, rules.dedupe or rules.leakage != "keep",
             "dedupe and leakage rules")
    _require(kinds, "suggesting", run_id, rules.apply_suggested is not None, "apply_suggested")
    _require(kinds, "held_out_suggesting", run_id,
             rules.apply_suggested == ENGINE_CONFIDENCE, f"apply_suggested {ENGINE_CONFIDENCE!r}")
    if rules.detectors:
        return list(rules.detectors)
    return [name for name in available if name not in kinds.of("duplicate")]


def _require(kinds: DetectorKinds, kind: str, run_id: int, needed: bool, what: str) -> None:
    if needed and not kinds.of(kind):
        matches, called = KINDS[kind]
        registered = [facts["name"] for facts in catalogue() if matches(facts)]
        raise ConfigError(
            f"run {run_id} has no scores from {called} ({', '.join(registered)}), which {what} "
            f"need; rerun the audit with one of them, or leave {what} out"
        )


def _flags(store: Store, run_id: int | None, detectors: list[str],
           rules: ExportRules) -> pd.DataFrame:
    if run_id is None or not (rules.include_flagged or rules.weights) or not detectors:
        return pd.DataFrame(columns=_EMPTY["flags"])
    return detector_flags(store, run_id, detectors, flagged_only=not rules.weights,
                          threshold=rules.threshold)


def _duplicates(store: Store, run_id: int | None, rules: ExportRules,
                detectors: list[str]) -> pd.DataFrame:
    if run_id is None or not (rules.dedupe or rules.leakage != "keep"):
        return pd.DataFrame(columns=_EMPTY["duplicates"])
    return duplicate_sets(store, run_id, detectors)


def _suggestions(store: Store, run_id: int | None, rules: ExportRules,
                 thresholds: dict[str, dict[str, float]] | None,
                 detectors: list[str]) -> pd.DataFrame:
    """The run's label suggestions, each with the confidence it needs to apply (with "auto",
    its detector's threshold of the suggested class; none, so never applied, for a detector
    without held-out scores)."""
    if run_id is None or rules.apply_suggested is None:
        return pd.DataFrame(columns=_EMPTY["suggestions"])
    suggestions = label_suggestions(store, run_id, detectors)
    if thresholds is None:
        return suggestions.assign(min_confidence=float(rules.apply_suggested))
    needed = [thresholds.get(detector, {}).get(label)
              for detector, label in zip(suggestions["detector"], suggestions["suggested_label"])]
    return suggestions.assign(min_confidence=pd.array(needed, dtype="Float64"))


def _suggestion_thresholds(store: Store, run: dict | None, samples: pd.DataFrame,
                           rules: ExportRules,
                           kinds: DetectorKinds) -> dict[str, dict[str, float]] | None:
    """With apply_suggested "auto": confident learning's threshold per detector and class,
    from the self-confidence scores of the run's held-out suggesters (``confident_thresholds``)."""
    if run is None or rules.apply_suggested != ENGINE_CONFIDENCE:
        return None
    detectors = kinds.of("held_out_suggesting")
    _check_self_confidence(run, detectors)
    scores = detector_flags(store, int(run["id"]), detectors)
    return confident_thresholds(scores, samples)


def _check_self_confidence(run: dict, detectors: list[str]) -> None:
    """Refuse a detector whose ``method`` param made its scores something other than the
    probability of the given label (a margin, say)."""
    config = json.loads(run["config"]) if isinstance(run["config"], str) else run["config"] or {}
    defaults = {facts["name"]: facts["params"] for facts in catalogue()}
    for name in detectors:
        chosen = ((config.get("params") or {}).get(name) or {}).get("method")
        method = chosen or defaults.get(name, {}).get("method", "self_confidence")
        if method != "self_confidence":
            raise ConfigError(
                f"run {run['id']} scored {name} with method {method!r}, whose scores are not "
                f"the class probabilities that apply_suggested {ENGINE_CONFIDENCE!r} reads; "
                "give a minimum confidence instead, e.g. --apply-suggested 0.9"
            )
