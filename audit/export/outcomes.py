"""What the export rules do: for every selected example, its outcome (kept, removed,
relabelled, weighted) and why (the export "plan").

Pure functions over frames (no store, no files), so the preview and the export agree by
construction. ``PRECEDENCE`` and ``WEIGHT_FORMULA`` below say how the rules combine; both
are copied into every ``sieve_export.json`` and into docs/export.md.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from audit.ingest import SPLITS
from audit.export.rules import ExportRules

PRECEDENCE = """\
1. A person's standing decision (remove / relabel / keep; the latest wins, undo withdraws)
   always wins over every automatic rule, in every split.
2. The split rule: the automatic rules (flagged drops, suggested labels, dedupe, score
   weights) act only on the chosen auto_splits (train alone by default); other splits change
   only through reviewed decisions and the leakage side chosen.
3. Automatic drops: flagged by a chosen detector (is_issue, or score < threshold), and
   train/test leakage on the chosen side ("test": members outside train; "train": members
   in train; an explicit choice, so it applies whatever auto_splits says).
4. Suggested labels: a flag with a suggested label (from a detector that suggests labels;
   where several flag a sample, the one doubting its label most, as Explore shows) whose
   suggested_confidence reaches apply_suggested (a number, or "auto": that detector's
   confident-learning threshold of the suggested class) is relabelled instead of dropped;
   that also answers the other flags about its label (the run's label-family detectors and
   any detector whose details suggest a label), while any other flag (outliers, image
   quality ...) still drops it.
5. Near-duplicate sets: within a split, among the members still kept, the first in source
   order stays (or every member a person kept or relabelled); the others are dropped."""

WEIGHT_FORMULA = """\
For each chosen detector d with score s_d: w_d = min(1, s_d / threshold) when a threshold is
set, else w_d = s_d if d flags the example and 1 if not. sample_weight = min over d of w_d
(1 without scores). Overrides: removed examples 0; examples a person kept or relabelled 1;
examples relabelled by a suggestion get the suggestion's confidence. Splits outside
auto_splits take no score weights (1 unless a person removed the example)."""

COUNT_COLUMNS = ["split", "label", "before", "kept", "removed", "relabelled", "relabelled_in",
                 "after", "weighted"]
SPLIT_COLUMNS = ["split", "before", "removed", "relabelled", "weighted", "after", "written"]
RULE_COLUMNS = ["split", "rule", "removed", "relabelled", "weighted", "kept"]
RULES_IN_ORDER = ("reviewer", "flagged", "leakage", "suggested", "dedupe", "weights", "none")


@dataclasses.dataclass
class PlanInputs:
    """Everything the plan reads, already loaded from the store."""

    samples: pd.DataFrame       # samples_frame columns
    decisions: pd.DataFrame     # current_decisions: sample_id, action, new_label, note
    flags: pd.DataFrame         # sample_id, detector, score, is_issue, suggests_label
    duplicates: pd.DataFrame    # sample_id, set_id, duplicate_of, leak
    suggestions: pd.DataFrame   # sample_id, detector, suggested_label, suggested_confidence,
                                # min_confidence
    rules: ExportRules
    label_detectors: frozenset[str] = frozenset()   # the run's detectors of the label family


def build_plan(inputs: PlanInputs) -> pd.DataFrame:
    """One row per selected sample, in source order, with its action, new label, reason and
    the ``rule`` that decided it (one of ``RULES_IN_ORDER``; empty: no rule touched it)."""
    rules = inputs.rules
    flags, duplicates = _plain_strings(inputs.flags), _plain_strings(inputs.duplicates)
    plan = _selected(_plain_strings(inputs.samples), rules.splits)
    automatic = plan.index[plan["split"].isin(rules.auto_splits)]
    person = _plain_strings(inputs.decisions).set_index("sample_id").reindex(plan.index)
    suggested = _suggested_relabels(plan.loc[automatic], _plain_strings(inputs.suggestions),
                                    rules.apply_suggested)
    flagged = _flag_reasons(plan.loc[automatic], flags, rules, suggested.index,
                            inputs.label_detectors)
    flagged = flagged.reindex(plan.index, fill_value="")
    leaked = _leak_reasons(plan, duplicates, rules.leakage)
    auto = _joined(flagged, leaked)
    plan.loc[auto != "", "action"] = "remove"
    plan["reason"] = auto
    plan["rule"] = np.where(flagged != "", "flagged", np.where(leaked != "", "leakage", ""))
    _apply_suggestions(plan, suggested)
    _apply_decisions(plan, person, auto)
    _apply_dedupe(plan, automatic, duplicates, person, rules.dedupe)
    if rules.weights:
        automatic_flags = flags[flags["sample_id"].isin(automatic)]
        plan["sample_weight"] = _weights(plan, automatic_flags, rules, person, suggested)
    return plan.reset_index(drop=True)


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python objects: hashed lookups (isin, loc) on Arrow strings are slow."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype)]
    return frame.astype({c: object for c in text})


def _selected(samples: pd.DataFrame, splits: list[str] | None) -> pd.DataFrame:
    chosen = samples if splits is None else samples[samples["split"].isin(splits)]
    plan = chosen[["sample_id", "row_index", "split", "label"]].copy()
    plan["new_label"] = plan["label"]
    plan["action"] = "keep"
    plan["reason"] = ""
    return plan.set_index(plan["sample_id"].rename(None))


def _joined(first: pd.Series, second: pd.Series) -> pd.Series:
    both = (first != "") & (second != "")
    return (first + np.where(both, "; ", "") + second).astype(str)


# --- automatic drops -----------------------------------------------------------------------

def _flag_reasons(plan: pd.DataFrame, flags: pd.DataFrame, rules: ExportRules,
                  relabelled: pd.Index, label_detectors: frozenset[str]) -> pd.Series:
    reasons = pd.Series("", index=plan.index, dtype=object)
    if not rules.include_flagged or flags.empty:
        return reasons
    hits = flags[_is_flagged(flags, rules.threshold) & flags["sample_id"].isin(plan.index)]
    about_label = hits["suggests_label"].astype(bool) | hits["detector"].isin(label_detectors)
    fixed = about_label & hits["sample_id"].isin(relabelled)
    hits = hits[~fixed]
    texts = hits["detector"] + " (score " + hits["score"].map(_score_text) + ")"
    joined: dict[str, str] = {}
    for sample_id, text in zip(hits["sample_id"], texts):
        joined[sample_id] = f"{joined[sample_id]}, {text}" if sample_id in joined else text
    reasons.loc[list(joined)] = ["flagged by " + text for text in joined.values()]
    return reasons


def _is_flagged(flags: pd.DataFrame, threshold: float | None) -> pd.Series:
    if threshold is None:
        return flags["is_issue"].astype(bool)
    return flags["score"].lt(threshold).fillna(False)


def _score_text(score: float) -> str:
    return "n/a" if pd.isna(score) else f"{score:.3f}"


def _leak_reasons(plan: pd.DataFrame, duplicates: pd.DataFrame, side: str) -> pd.Series:
    reasons = pd.Series("", index=plan.index, dtype=object)
    if side == "keep" or duplicates.empty:
        return reasons
    leaks = duplicates[duplicates["leak"].astype(bool) & duplicates["sample_id"].isin(plan.index)]
    splits = plan.loc[leaks["sample_id"], "split"].to_numpy()
    on_side = (splits == "train") if side == "train" else (splits != "train")
    leaks = leaks[on_side]
    reasons.loc[leaks["sample_id"]] = (
        "train/test leak: near-duplicate set " + leaks["set_id"].fillna("?").astype(str)
        + f" spans train and test; removed from the {side} side"
    ).to_numpy()
    return reasons


# --- relabels and decisions ----------------------------------------------------------------

def _suggested_relabels(plan: pd.DataFrame, suggestions: pd.DataFrame,
                        apply_suggested: float | str | None) -> pd.DataFrame:
    """The suggestions that apply: in ``plan``'s rows and at least their ``min_confidence``."""
    if apply_suggested is None or suggestions.empty:
        return suggestions.iloc[0:0].set_index("sample_id")
    chosen = suggestions[suggestions["sample_id"].isin(plan.index)].set_index("sample_id")
    required = chosen["min_confidence"].astype(float).fillna(np.inf)
    confident = chosen["suggested_confidence"].fillna(-1.0) >= required
    differs = chosen["suggested_label"] != plan.loc[chosen.index, "label"]
    return chosen[confident & differs]


def confident_thresholds(self_confidence: pd.DataFrame,
                         samples: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Confident learning's per-class threshold t_j for each detector: the mean self-confidence
    (its held-out score, the out-of-sample probability of the given label) of the samples
    labelled j (cleanlab's ``get_confident_thresholds``). A suggestion of class j is confident
    when its probability reaches its detector's t_j, the rule the confident joint counts by."""
    labels = _plain_strings(samples).set_index("sample_id")["label"]
    scored = _plain_strings(self_confidence).dropna(subset=["score"])
    given = labels.reindex(scored["sample_id"]).to_numpy()
    means = scored["score"].astype(float).groupby([scored["detector"].to_numpy(), given]).mean()
    thresholds: dict[str, dict[str, float]] = {}
    for (detector, label), value in means.items():
        thresholds.setdefault(str(detector), {})[str(label)] = float(value)
    return thresholds


def _apply_suggestions(plan: pd.DataFrame, suggested: pd.DataFrame) -> None:
    rows = suggested.index[plan.loc[suggested.index, "action"] == "keep"]
    if rows.empty:
        return
    old = plan.loc[rows, "label"]
    new = suggested.loc[rows, "suggested_label"]
    confidence = suggested.loc[rows, "suggested_confidence"]
    plan.loc[rows, "new_label"] = new
    plan.loc[rows, "action"] = "relabel"
    plan.loc[rows, "rule"] = "suggested"
    plan.loc[rows, "reason"] = [
        f"suggested label {n!r} (confidence {c:.3f}) replaces {o!r}"
        for n, c, o in zip(new, confidence, old)
    ]


def _apply_decisions(plan: pd.DataFrame, person: pd.DataFrame, auto: pd.Series) -> None:
    reviewed = person[person["action"].notna()]
    if reviewed.empty:
        return
    outcomes = [
        _decision_outcome(decision, label, auto_reason)
        for decision, label, auto_reason in zip(
            reviewed.itertuples(), plan.loc[reviewed.index, "label"], auto[reviewed.index])
    ]
    plan.loc[reviewed.index, ["action", "new_label", "reason"]] = np.array(outcomes, dtype=object)
    plan.loc[reviewed.index, "rule"] = "reviewer"


def _decision_outcome(decision, label: str, auto_reason: str) -> tuple[str, str, str]:
    note = f": {decision.note}" if isinstance(decision.note, str) and decision.note else ""
    if decision.action == "remove":
        return "remove", label, f"removed by reviewer{note}"
    if decision.action == "relabel" and decision.new_label != label:
        return "relabel", decision.new_label, (
            f"relabelled by reviewer: {label!r} -> {decision.new_label!r}{note}")
    overridden = f" (overrides: {auto_reason})" if auto_reason else ""
    return "keep", label, f"kept by reviewer{note}{overridden}"


# --- near-duplicate sets -------------------------------------------------------------------

def _apply_dedupe(plan: pd.DataFrame, automatic: pd.Index, duplicates: pd.DataFrame,
                  person: pd.DataFrame, enabled: bool) -> None:
    """Within a split, drop all but one member of each set, among the ``automatic`` rows."""
    if not enabled or duplicates.empty:
        return
    members = duplicate_members(duplicates)
    members = members[members["sample_id"].isin(automatic)]
    members = members[(plan.loc[members["sample_id"], "action"] != "remove").to_numpy()]
    protected = person.loc[members["sample_id"], "action"].isin(["keep", "relabel"]).to_numpy()
    members = members.assign(
        split=plan.loc[members["sample_id"], "split"].to_numpy(), protected=protected,
        row_index=plan.loc[members["sample_id"], "row_index"].to_numpy(),
    ).sort_values(["protected", "row_index"], ascending=[False, True])
    groups = members.groupby(["split", "set_id"], sort=False)
    keeper = groups["sample_id"].transform("first")
    dropped = members[(groups.cumcount() > 0).to_numpy() & ~members["protected"].to_numpy()]
    plan.loc[dropped["sample_id"], "action"] = "remove"
    plan.loc[dropped["sample_id"], "rule"] = "dedupe"
    plan.loc[dropped["sample_id"], "reason"] = [
        f"near-duplicate of {k!r} (set {s})"
        for k, s in zip(keeper[dropped.index], dropped["set_id"])
    ]


def duplicate_members(duplicates: pd.DataFrame) -> pd.DataFrame:
    """sample_id -> set_id, joining members through shared set ids and duplicate_of links."""
    parent: dict[tuple, tuple] = {}
    for row in duplicates.itertuples(index=False):
        node = ("sample", row.sample_id)
        if isinstance(row.set_id, str):
            _union(parent, node, ("set", row.set_id))
        for partner in _partners(row.duplicate_of):
            _union(parent, node, ("sample", partner))
    components: dict[tuple, list[tuple]] = {}
    for node in list(parent):
        components.setdefault(_find(parent, node), []).append(node)
    rows = [(name, _set_name(nodes)) for nodes in components.values()
            for kind, name in nodes if kind == "sample"]
    members = pd.DataFrame(rows, columns=["sample_id", "set_id"], dtype=object)
    return members.sort_values("sample_id")


def _partners(duplicate_of) -> list[str]:
    if not isinstance(duplicate_of, str):
        return []
    value = json.loads(duplicate_of)
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _find(parent: dict, node: tuple) -> tuple:
    parent.setdefault(node, node)
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _union(parent: dict, a: tuple, b: tuple) -> None:
    root_a, root_b = _find(parent, a), _find(parent, b)
    if root_a != root_b:
        parent[max(root_a, root_b)] = min(root_a, root_b)


def _set_name(nodes: list[tuple]) -> str:
    set_ids = sorted(name for kind, name in nodes if kind == "set")
    return set_ids[0] if set_ids else "of " + min(name for _, name in nodes)


# --- weights -------------------------------------------------------------------------------

def _weights(plan: pd.DataFrame, flags: pd.DataFrame, rules: ExportRules,
             person: pd.DataFrame, suggested: pd.DataFrame) -> pd.Series:
    weight = score_weights(flags, rules.threshold).reindex(plan.index).fillna(1.0)
    by_suggestion = suggested.index[plan.loc[suggested.index, "action"] == "relabel"]
    if len(by_suggestion):
        confidence = suggested.loc[by_suggestion, "suggested_confidence"].astype(float)
        weight.loc[by_suggestion] = confidence.clip(0.0, 1.0)
    weight[person["action"].isin(["keep", "relabel"])] = 1.0
    weight[plan["action"] == "remove"] = 0.0
    return weight.astype(float)


def score_weights(flags: pd.DataFrame, threshold: float | None) -> pd.Series:
    """min over detectors of w_d (see the module docstring), one value per sample_id."""
    if flags.empty:
        return pd.Series(dtype=float)
    score = flags["score"].astype(float)
    if threshold is None:
        per_detector = score.where(flags["is_issue"].astype(bool), 1.0)
    else:
        per_detector = (score / threshold).clip(upper=1.0) if threshold > 0 else score * 0 + 1.0
    return per_detector.fillna(1.0).clip(0.0, 1.0).groupby(flags["sample_id"]).min()


# --- counts --------------------------------------------------------------------------------

def count_table(plan: pd.DataFrame) -> pd.DataFrame:
    """kept / removed / relabelled per split and class; relabelled_in and after by new label;
    weighted: the kept rows written with a sample_weight below 1 (a part of kept)."""
    frame = _outcomes(plan)
    by_class = frame.groupby(["split", "label"])[["before", "removed", "relabelled",
                                                  "weighted"]].sum()
    moved = frame[frame["relabelled"]].groupby(["split", "new_label"]).size()
    moved.index = moved.index.set_names(["split", "label"])
    table = by_class.join(moved.rename("relabelled_in"), how="outer").fillna(0).astype(int)
    table["kept"] = table["before"] - table["removed"] - table["relabelled"]
    table["after"] = table["kept"] + table["relabelled_in"]
    return _in_split_order(table.reset_index(), "label")[COUNT_COLUMNS]


def split_table(plan: pd.DataFrame, weights: bool) -> pd.DataFrame:
    """Per split: before, removed, relabelled, weighted, after, and the rows written (every
    row with weights, the rows kept or relabelled without)."""
    table = _outcomes(plan).groupby("split")[["before", "removed", "relabelled",
                                              "weighted"]].sum().astype(int)
    table["after"] = table["before"] - table["removed"]
    table["written"] = table["before"] if weights else table["after"]
    return _in_split_order(table.reset_index(), "split")[SPLIT_COLUMNS]


def rule_table(plan: pd.DataFrame) -> pd.DataFrame:
    """Per split and deciding rule (``RULES_IN_ORDER``; "weights": kept at a score weight
    below 1, "none": untouched): how many rows it removed, relabelled, weighted and kept."""
    frame = _outcomes(plan)
    untouched = np.where(frame["weighted"], "weights", "none")
    frame["rule"] = np.where(frame["rule"] != "", frame["rule"], untouched)
    frame["kept"] = ~(frame["removed"] | frame["relabelled"])
    table = frame.groupby(["split", "rule"])[["removed", "relabelled", "weighted",
                                              "kept"]].sum().astype(int).reset_index()
    order = {rule: i for i, rule in enumerate(RULES_IN_ORDER)}
    table["_order"] = table["rule"].map(order)
    return _in_split_order(table, "_order")[RULE_COLUMNS]


def _outcomes(plan: pd.DataFrame) -> pd.DataFrame:
    """The plan with 0/1 columns before, removed, relabelled and weighted."""
    kept = plan["action"] == "keep"
    weight = plan["sample_weight"] if "sample_weight" in plan.columns else 1.0
    return plan.assign(
        before=1, removed=plan["action"] == "remove",
        relabelled=(plan["action"] == "relabel") & (plan["new_label"] != plan["label"]),
        weighted=kept & (weight < 1.0),
    )


def _in_split_order(table: pd.DataFrame, then: str) -> pd.DataFrame:
    order = {split: i for i, split in enumerate(SPLITS)}
    rank = table["split"].map(order).fillna(len(SPLITS))
    return table.assign(_rank=rank).sort_values(["_rank", "split", then]).drop(
        columns="_rank").reset_index(drop=True)
