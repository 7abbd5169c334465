"""A rerun that starts from the reviewed state: the standing decisions of a dataset, as an
audit uses them.

- **relabel**: the new label is the label the run audits with;
- **remove**: the sample is still scored, but the probe and the training-dynamics heads never
  train on it;
- **keep**: a person confirmed the sample's label, so detectors that claim a label is wrong
  (``suggests_labels``) do not count it as an issue in this run; its scores stay as measured.

The decision log is append-only, so "the decisions up to log row N" is a fixed state: a run
records N (``through_id``) and its counts, and ``reviewed_corrections(..., through_id=N)``
gives back exactly what it used.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from audit.store import Store
from audit.store.flags import current_decisions

WHAT_DECISIONS_DO = ("Relabels become the labels, removed samples leave the probe's and the "
                     "heads' training (they are still scored), kept samples are trusted (not "
                     "flagged by label checks). The run records which decisions it used.")


@dataclasses.dataclass(frozen=True)
class Corrections:
    through_id: int | None = None                       # the last decision-log row used
    relabels: dict[str, str] = dataclasses.field(default_factory=dict)   # sample_id -> label
    removed: frozenset[str] = frozenset()
    trusted: frozenset[str] = frozenset()

    @property
    def used(self) -> bool:
        return self.through_id is not None

    def relabelled(self, samples: pd.DataFrame) -> pd.DataFrame:
        """``samples`` with each relabelled sample's label replaced by its new label."""
        if not self.relabels:
            return samples
        labels = samples["sample_id"].astype(str).map(self.relabels)
        return samples.assign(label=labels.fillna(samples["label"]))

    def trainable(self, sample_ids: list[str]) -> np.ndarray:
        """True where a model may train on the sample (not removed)."""
        return ~np.isin(np.asarray(sample_ids, dtype=object), list(self.removed))

    def is_trusted(self, sample_ids: list[str]) -> np.ndarray:
        return np.isin(np.asarray(sample_ids, dtype=object), list(self.trusted))

    def summary(self) -> dict:
        return {"through_id": self.through_id, "relabelled": len(self.relabels),
                "removed": len(self.removed), "kept": len(self.trusted)}

    def note(self) -> str:
        if not self.used:
            return "no reviewed decisions yet; audited with the labels as ingested"
        return (f"audited with the reviewed decisions up to log entry {self.through_id}: "
                f"{len(self.relabels)} relabels used as labels, {len(self.removed)} removed "
                f"samples left out of the probe's and the heads' training, {len(self.trusted)} "
                "kept samples trusted (not flagged by label checks)")


def reviewed_corrections(store: Store, dataset_id: int,
                         through_id: int | None = None) -> Corrections:
    """The dataset's standing decisions (as of log row ``through_id``, default: all of them)."""
    standing = current_decisions(store, dataset_id, through_id)
    last = _last_log_id(store, dataset_id, through_id)
    if last is None:
        return Corrections()
    by_action = {action: standing[standing["action"] == action]
                 for action in ("relabel", "remove", "keep")}
    relabels = by_action["relabel"]
    return Corrections(
        through_id=last,
        relabels=dict(zip(relabels["sample_id"].astype(str), relabels["new_label"].astype(str))),
        removed=frozenset(by_action["remove"]["sample_id"].astype(str)),
        trusted=frozenset(by_action["keep"]["sample_id"].astype(str)))


def _last_log_id(store: Store, dataset_id: int, through_id: int | None) -> int | None:
    with store.transaction() as con:
        row = con.execute("SELECT max(id) FROM flags WHERE dataset_id = $dataset "
                          "AND ($through IS NULL OR id <= $through)",
                          {"dataset": dataset_id, "through": through_id}).fetchone()
    return None if row[0] is None else int(row[0])
