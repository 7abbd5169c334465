"""Round trip: the demo (real PNGs) is ingested, scored, reviewed, exported in every format and
re-ingested; the ids, labels, splits and file bytes must be exactly what the rules say."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from audit.ingest import ingest
from audit.demo import generate_demo
from audit.export import ExportRules, export_dataset
from audit.settings import load_settings
from audit.store import Store
from audit.store.datasets import samples_frame
from audit.store.exports import list_exports
from audit.store.flags import Decision, record_decisions
from tests.audit.test_export_support import ingest_small, succeeded_run, tree_digest

pytestmark = pytest.mark.slow
# every split on purpose: the expected labels below apply the automatic rules to train and test
RULES = ExportRules(include_flagged=True, detectors=["label_issue", "outlier"],
                    apply_suggested=0.9, dedupe=True, leakage="test",
                    auto_splits=["train", "test"])


class Demo:
    """The ingested demo with synthetic scores from its truth, decisions, and what to expect."""

    def __init__(self, base: Path) -> None:
        home = base / "data"
        env = {"AUDIT_DATA_HOME": str(home), "AUDIT_INGEST_WORKERS": "2"}
        self.settings = load_settings(toml_path=base / "absent.toml", env=env)
        self.store = Store.from_settings(self.settings)
        manifest, truth_path = generate_demo(base / "demo", seed=0)
        self.source = manifest.parent
        self.truth = json.loads(truth_path.read_text())
        self.dataset_id = ingest(self.store, manifest, self.settings, name="demo")
        self.samples = samples_frame(self.store, self.dataset_id).set_index("sample_id")
        self.flips = sorted(self.truth["label_flip"])
        self.confident = set(self.flips[: len(self.flips) // 2])
        succeeded_run(self.store, self.dataset_id, self._score_rows())
        self.plain = sorted(set(self.samples.index) - self._planted())[:5]
        self.kept_outlier = self.truth["outlier"][0]
        record_decisions(self.store, self.dataset_id, [
            Decision(self.plain[0], "remove"), Decision(self.plain[1], "remove", note="smudged"),
            Decision(self.plain[2], "relabel", "ten"),
            Decision(self.plain[3], "relabel", "one"), Decision(self.plain[3], "undo"),
            Decision(self.plain[4], "remove"), Decision(self.plain[4], "keep"),
            Decision(self.kept_outlier, "keep"),
        ])
        self.expected = self._expected_labels()

    def _planted(self) -> set[str]:
        pairs = {i for pair in self.truth["near_duplicate"] for i in pair}
        return (set(self.flips) | set(self.truth["outlier"]) | pairs
                | set(self.truth["unreadable"]) | set(self.truth["caption_mismatch"]))

    def _score_rows(self) -> list[tuple]:
        rows = [(sid, "label_issue", 0.03, True,
                 {"suggested_label": info["true_label"],
                  "suggested_confidence": 0.95 if sid in self.confident else 0.6})
                for sid, info in self.truth["label_flip"].items()]
        rows += [(sid, "outlier", 0.02, True, {"reason": "far"}) for sid in self.truth["outlier"]]
        leaks = {tuple(pair) for pair in self.truth["leak"]}
        for k, (original, copy) in enumerate(self.truth["near_duplicate"]):
            leak = (original, copy) in leaks
            rows.append((original, "near_duplicate", 0.1, False, {"set_id": f"p{k}", "leak": leak}))
            rows.append((copy, "near_duplicate", 0.1, True,
                         {"set_id": f"p{k}", "leak": leak, "duplicate_of": [original]}))
        return rows

    def _expected_labels(self) -> dict[str, str]:
        """sample_id -> exported label, worked out from the truth by hand (not by the plan)."""
        removed = {self.plain[0], self.plain[1]}
        removed |= set(self.truth["outlier"]) - {self.kept_outlier}
        removed |= set(self.flips) - self.confident
        leaks = {tuple(pair) for pair in self.truth["leak"]}
        for original, copy in self.truth["near_duplicate"]:
            if (original, copy) in leaks:
                removed |= {m for m in (original, copy) if self.samples.at[m, "split"] == "test"}
            else:
                removed.add(copy)
        labels = {sid: label for sid, label in self.samples["label"].items() if sid not in removed}
        labels.update({sid: self.truth["label_flip"][sid]["true_label"] for sid in self.confident})
        labels[self.plain[2]] = "ten"
        return labels


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    return Demo(tmp_path_factory.mktemp("export_demo"))


def _reingest(demo: Demo, out: Path, fmt: str) -> pd.DataFrame:
    frames = []
    for manifest in sorted(out.glob(f"*.{fmt}")):
        dataset_id = ingest(demo.store, manifest, demo.settings, name=f"re-{fmt}-{manifest.stem}")
        frames.append(samples_frame(demo.store, dataset_id))
    return pd.concat(frames).set_index("sample_id")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_manifest_round_trip(demo, tmp_path, fmt) -> None:
    before = tree_digest(demo.source)
    result = export_dataset(demo.store, demo.settings, demo.dataset_id, tmp_path / "out", fmt,
                            RULES)
    assert tree_digest(demo.source) == before
    back = _reingest(demo, result.out_dir, fmt)
    assert dict(back["label"]) == demo.expected
    original = demo.samples.loc[back.index]
    assert (back["split"] == original["split"]).all()
    assert (back["sha256"] == original["sha256"]).all()
    assert (back["caption"] == original["caption"]).all()
    assert sorted(back.index[back["load_error"].notna()]) == sorted(demo.truth["unreadable"])
    extra = back["extra"].map(json.loads)
    assert (extra.map(lambda e: e["original_label"]) == original["label"]).all()
    noted = sorted(sid for sid, e in extra.items() if e["export_note"])
    assert noted == sorted(demo.truth["unreadable"])
    assert extra[noted[0]]["export_note"] == (
        "image did not load at ingestion; kept in the manifest only")
    changed = extra.map(lambda e: e["change"])
    relabelled = len(demo.confident) + 1
    assert collections.Counter(changed) == collections.Counter(
        {"kept": len(demo.expected) - relabelled, "relabelled": relabelled})
    _check_provenance(demo, result, fmt)


def test_image_folder_round_trip(demo, tmp_path) -> None:
    before = tree_digest(demo.source)
    result = export_dataset(demo.store, demo.settings, demo.dataset_id, tmp_path / "out",
                            "imagefolder", RULES)
    assert tree_digest(demo.source) == before
    back = samples_frame(demo.store, ingest(demo.store, result.out_dir, demo.settings,
                                            name="re-imagefolder"))
    usable = {sid: label for sid, label in demo.expected.items()
              if sid not in demo.truth["unreadable"]}
    expected = collections.Counter(
        (demo.samples.at[sid, "split"], label, demo.samples.at[sid, "sha256"])
        for sid, label in usable.items())
    assert collections.Counter(zip(back["split"], back["label"], back["sha256"])) == expected
    assert back["load_error"].isna().all()
    provenance = _check_provenance(demo, result, "imagefolder")
    assert provenance["files"]["label_folders"]["ten"] == "ten"
    assert {e["handling"] for e in provenance["load_errors"]} == {"left out of the image folder"}


def _check_provenance(demo: Demo, result, fmt: str) -> dict:
    provenance = json.loads(result.provenance_path.read_text(encoding="utf-8"))
    total = provenance["counts"]["total"]
    relabelled = len(demo.confident) + 1
    assert total == {"before": len(demo.samples), "removed": len(demo.samples) - len(demo.expected),
                     "relabelled": relabelled, "after": len(demo.expected)}
    assert len(provenance["changed"]) == total["removed"] + relabelled
    assert provenance["format"] == fmt and provenance["dataset"]["name"] == "demo"
    assert provenance["rules"]["leakage"] == "test" and provenance["run"]["status"] == "succeeded"
    assert provenance["versions"]["duckdb"] == duckdb.__version__
    skipped = sorted(s["sample_id"] for s in provenance["skipped_files"])
    assert skipped == (sorted(demo.truth["unreadable"]) if fmt == "imagefolder" else [])
    exports = list_exports(demo.store, demo.dataset_id)
    assert exports.iloc[0]["out_dir"] == str(result.out_dir) and exports.iloc[0]["format"] == fmt
    _check_links(demo, result, provenance)
    return provenance


def _check_links(demo: Demo, result, provenance: dict) -> None:
    files = provenance["files"]
    placed = [p for p in result.out_dir.rglob("*.png")]
    assert files["hard_links"] + files["copies"] == len(placed)
    if files["hard_links"]:
        some = next(p for p in placed if p.stat().st_nlink > 1)
        assert some.stat().st_nlink >= 2
        assert any(os.path.samefile(some, demo.source / path) for path in demo.samples["path"])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_extra_columns_and_weights_survive(store, settings, tmp_path, fmt) -> None:
    dataset_id = ingest_small(store, settings, tmp_path / "src")
    succeeded_run(store, dataset_id, [("s01", "outlier", 0.25, True, None)])
    record_decisions(store, dataset_id, [Decision("s03", "remove")])
    result = export_dataset(store, settings, dataset_id, tmp_path / "out", fmt,
                            ExportRules(weights=True))
    assert result.rows_written == 12 and result.totals["removed"] == 1
    assert result.summary() == (f"wrote 12 rows with sample weights (1 at weight 0) as {fmt} "
                                "from 12 (removed 1, relabelled 0)")
    back = pd.concat(samples_frame(store, ingest(store, m, settings, name=f"{fmt}-{m.stem}"))
                     for m in sorted(result.out_dir.glob(f"*.{fmt}"))).set_index("sample_id")
    extra = back["extra"].map(json.loads)
    assert [str(extra[f"s{i:02d}"]["rating"]) for i in range(12)] == [str(i) for i in range(12)]
    assert [extra[f"s{i:02d}"]["source"] for i in range(12)] == [f"cam{i % 4}" for i in range(12)]
    weights = {sid: float(e["sample_weight"]) for sid, e in extra.items()}
    assert (weights["s01"], weights["s03"], weights["s00"]) == (0.25, 0.0, 1.0)
    assert extra["s03"]["change"] == "removed"
