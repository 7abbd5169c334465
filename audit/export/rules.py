"""What an export drops, relabels and weights: the ``ExportRules`` a user chooses.

The rules are checked on their own here (ranges, names, combinations); the checks that
need the store (does the run exist, did it run these detectors) happen when the export
loads its inputs.
"""

from __future__ import annotations

import dataclasses
import math

from audit.datasets import SPLITS
from audit.errors import ConfigError

FORMATS = ("parquet", "csv", "jsonl", "imagefolder")
LEAKAGE_SIDES = ("keep", "test", "train")


@dataclasses.dataclass(frozen=True)
class ExportRules:
    """Reviewed decisions always apply; every other rule is opt-in.

    run_id: the run whose scores to use (None: the latest succeeded run, or no scores).
    include_flagged: also drop examples the chosen detectors flag (unless a person kept them).
    detectors: the detectors that count for include_flagged and weights (None: every detector
        in the run except near_duplicate, whose sets are handled by dedupe and leakage).
    threshold: flag scores below this instead of the detectors' own is_issue.
    apply_suggested: relabel label_issue flags whose suggested_confidence is at least this.
    dedupe: keep one member of each near-duplicate set within a split.
    leakage: drop train/test near-duplicates from the "test" or the "train" side, or "keep".
    weights: write every row with a sample_weight instead of dropping rows.
    splits: export only these splits (None: all).
    """

    run_id: int | None = None
    include_flagged: bool = False
    detectors: list[str] | None = None
    threshold: float | None = None
    apply_suggested: float | None = None
    dedupe: bool = False
    leakage: str = "keep"
    weights: bool = False
    splits: list[str] | None = None

    def __post_init__(self) -> None:
        for name in ("detectors", "splits"):
            _normalise_names(self, name)
        _check_fraction("threshold", self.threshold, "--threshold 0.2")
        _check_fraction("apply_suggested", self.apply_suggested, "--apply-suggested 0.9")
        _check_choice("leakage", self.leakage, LEAKAGE_SIDES)
        _check_names("detectors", self.detectors)
        _check_names("splits", self.splits)
        for split in self.splits or []:
            _check_choice("split", split, SPLITS)
        if self.run_id is not None and (isinstance(self.run_id, bool) or self.run_id < 1):
            raise ConfigError(f"run_id {self.run_id!r} is not a run id; give a positive integer")

    @property
    def needs_scores(self) -> bool:
        """Whether any chosen rule reads a run's scores."""
        return (self.include_flagged or self.dedupe or self.leakage != "keep"
                or self.apply_suggested is not None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_format(fmt: str, rules: ExportRules) -> None:
    """Refuse an unknown format, and weights where the format has nowhere to put them."""
    _check_choice("format", fmt, FORMATS)
    if fmt == "imagefolder" and rules.weights:
        raise ConfigError(
            "format 'imagefolder' cannot carry sample weights (a folder tree has no column for "
            "them); use parquet, csv or jsonl with weights, or leave weights off"
        )


def _normalise_names(rules: ExportRules, name: str) -> None:
    values = getattr(rules, name)
    if isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        cleaned = [v.strip().lower() if name == "splits" else v.strip() for v in values]
        object.__setattr__(rules, name, cleaned)


def _check_fraction(name: str, value: float | None, example: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} {value!r} is not a number in [0, 1]; give one, e.g. {example}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not one of {list(choices)}; choose one of them")


def _check_names(name: str, values: list[str] | None) -> None:
    if values is None:
        return
    if isinstance(values, str) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(
            f"{name} {values!r} must be a non-empty list of names (comma-separated on the "
            "command line); leave it out to use all"
        )
