"""The samples an audit scores: the usable rows of a dataset (decoded at ingestion) in
source order, their class order and files, and the ``DetectorInputs`` built from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from audit.classes import class_order
from audit.corrections import Corrections
from audit.errors import InputError
from audit.images import sample_file
from audit.settings import Settings


@dataclasses.dataclass
class SampleTable:
    """The usable samples of a dataset (decoded at ingestion), in source order."""

    frame: pd.DataFrame
    root: Path
    class_names: list[str]
    total: int
    kept_rows: np.ndarray | None = None
    follow_links: bool = False

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, root: Path, name: str,
                   explicit_order: list[str] | None = None,
                   follow_links: bool = False) -> "SampleTable":
        class_names = class_order(frame["label"], explicit_order)
        usable = frame[frame["load_error"].isna()].reset_index(drop=True)
        if usable.empty:
            raise InputError(f"dataset {name!r}: none of its {len(frame)} images could be read "
                             "(see each sample's load error); fix the files and ingest again")
        return cls(usable, root.resolve(), class_names, len(frame), follow_links=follow_links)

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def unreadable(self) -> int:
        return self.total - self.n

    @property
    def row_index(self) -> np.ndarray:
        return self.frame["row_index"].to_numpy(dtype=np.int64)

    def audited_rows(self, whole: np.ndarray) -> np.ndarray:
        """The rows of ``whole`` (one per dataset row, source order) of the samples audited:
        ``whole`` itself when every row is (no 2 GB copy of 1M supplied embeddings)."""
        rows = self.row_index
        return whole if np.array_equal(rows, np.arange(self.total)) else whole[rows]

    @property
    def labels(self) -> np.ndarray:
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return self.frame["label"].astype(str).map(lookup).to_numpy(dtype=np.int64)

    @property
    def sample_ids(self) -> list[str]:
        return self.frame["sample_id"].astype(str).tolist()

    @property
    def sha256(self) -> list[str]:
        return self.frame["sha256"].astype(str).tolist()

    @property
    def paths(self) -> list[Path]:
        return [sample_file(self.root, p, self.follow_links) for p in self.frame["path"]]

    def without(self, rows: list[int]) -> "SampleTable":
        kept = np.setdiff1d(np.arange(self.n), rows)
        return dataclasses.replace(self, frame=self.frame.iloc[kept], kept_rows=kept)

    def reindexed(self) -> "SampleTable":
        return dataclasses.replace(self, frame=self.frame.reset_index(drop=True), kept_rows=None)

    def detector_inputs(self, settings: Settings, embeddings, pred_probs, knn, clip, seed: int,
                        device: str, corrections: Corrections, executor, axes=None):
        from audit.detectors.base import DetectorInputs
        from audit.images import ImageSource

        captions = self.frame["caption"]
        return DetectorInputs(
            sample_ids=self.sample_ids, labels=self.labels,
            class_names=self.class_names, splits=self.frame["split"].astype(str).to_numpy(),
            sha256=self.sha256, widths=self.frame["width"].to_numpy(dtype=np.int64),
            heights=self.frame["height"].to_numpy(dtype=np.int64),
            captions=None if captions.isna().all() else [None if pd.isna(c) else str(c)
                                                          for c in captions],
            embeddings=embeddings, pred_probs=pred_probs, knn=knn,
            load_image=ImageSource(self.root, tuple(self.frame["path"].tolist()),
                                   self.follow_links, settings.max_image_pixels),
            clip=clip, seed=seed, device=device,
            trainable=corrections.trainable(self.sample_ids),
            trusted=corrections.is_trusted(self.sample_ids), executor=executor,
            fitted_axes=axes)
