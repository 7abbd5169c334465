"""What an export drops, relabels and weights: the ``ExportRules`` a user chooses.

The split rule: automatic rules (flagged drops, suggested labels, dedupe, score weights) act
only on ``auto_splits``, train alone by default, so a validation or test split changes only
through a person's reviewed decisions, an explicit ``leakage`` side, or an explicit choice of
``auto_splits``. ``split_rule_text`` says so in words for the CLI and the Export page.

The rules are checked on their own here (ranges, names, combinations); the checks that
need the store (does the run exist, did it run these detectors) happen when the export
loads its inputs.
"""

from __future__ import annotations

import dataclasses
import math

from audit.ingest import SPLITS
from audit.errors import ConfigError

FORMATS = ("parquet", "csv", "jsonl", "imagefolder")
LEAKAGE_SIDES = ("keep", "test", "train")
DEFAULT_AUTO_SPLITS = ("train",)
ENGINE_CONFIDENCE = "auto"
AUTOMATIC_RULES = "flagged drops, suggested labels, dedupe and score weights"


@dataclasses.dataclass(frozen=True)
class ExportRules:
    """Reviewed decisions always apply, in every split; every other rule is opt-in.

    run_id: the run whose scores to use (None: the latest succeeded run, or no scores).
    include_flagged: also drop examples the chosen detectors flag (unless a person kept them).
    detectors: the detectors that count for include_flagged and weights (None: every detector
        in the run except its duplicate-family ones, whose sets dedupe and leakage handle).
    threshold: flag scores below this instead of the detectors' own calibrated is_issue.
    apply_suggested: relabel flagged examples whose suggested label (from the detector that
        doubts the label most among those that suggest labels, as Explore shows it) has a
        suggested_confidence of at least this; "auto": at least that detector's
        confident-learning threshold for the suggested class (the mean self-confidence of that
        class in the run, cleanlab's confident-joint threshold; held-out detectors only).
    dedupe: keep one member of each near-duplicate set within a split.
    leakage: drop train/test near-duplicates from the "test" or the "train" side, or "keep";
        an explicit choice, so it acts on the side it names whatever auto_splits says.
    weights: write every row with a sample_weight instead of dropping rows.
    splits: export only these splits (None: all).
    auto_splits: the splits the automatic rules (include_flagged, apply_suggested, dedupe,
        score weights) act on; other splits change only through reviewed decisions.
    """

    run_id: int | None = None
    include_flagged: bool = False
    detectors: list[str] | None = None
    threshold: float | None = None
    apply_suggested: float | str | None = None
    dedupe: bool = False
    leakage: str = "keep"
    weights: bool = False
    splits: list[str] | None = None
    auto_splits: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_AUTO_SPLITS))

    def __post_init__(self) -> None:
        for name in ("detectors", "splits", "auto_splits"):
            _normalise_names(self, name)
        _check_fraction("threshold", self.threshold, "--threshold 0.2")
        if self.apply_suggested != ENGINE_CONFIDENCE:
            _check_fraction("apply_suggested", self.apply_suggested,
                            f"--apply-suggested 0.9, or {ENGINE_CONFIDENCE!r}")
        _check_choice("leakage", self.leakage, LEAKAGE_SIDES)
        _check_names("detectors", self.detectors)
        _check_names("splits", self.splits)
        _check_split_list(self.auto_splits)
        for split in (self.splits or []) + self.auto_splits:
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


def split_rule_text(rules: ExportRules) -> str:
    """The split rule in words, for the CLI's preview and the Export page."""
    acting = [s for s in SPLITS if s in rules.auto_splits]
    spared = [s for s in SPLITS if s not in rules.auto_splits]
    where = f"act on {_listed(acting)} only" if acting else "act on no split"
    text = f"Automatic rules ({AUTOMATIC_RULES}) {where}."
    if spared:
        verb = "changes" if len(spared) == 1 else "change"
        also = " and the leakage rule" if rules.leakage != "keep" else ""
        text += f" {_listed(spared).capitalize()} {verb} only through reviewed decisions{also}."
    if rules.leakage == "test":
        text += (" Leakage drops train/test near-duplicates from the test side (every split "
                 "but train), as chosen.")
    elif rules.leakage == "train":
        text += " Leakage drops train/test near-duplicates from the train side, as chosen."
    return text


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


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
        cleaned = [v.strip() if name == "detectors" else v.strip().lower() for v in values]
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


def _check_split_list(values: list[str]) -> None:
    """auto_splits: a list of split names; empty means the automatic rules act nowhere."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)) \
            or not all(isinstance(v, str) for v in values):
        raise ConfigError(
            f"auto_splits {values!r} must be a list of split names (comma-separated on the "
            "command line), e.g. ['train']"
        )
