"""The Example page finds the run's image-text detectors by their recorded family, not by a
name: a consistency-family detector of any name shows its verdict on the caption."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.settings import load_settings
from audit.store import Store
from audit.store import runs as run_store
from tests.dashboard.conftest import APP

FACTS = {"caption_check": {"family": "consistency", "suggests_labels": False, "belief": None},
         "pixel_check": {"family": "quality", "suggests_labels": False, "belief": None}}


@pytest.fixture
def captioned(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUDIT_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUDIT_CONFIG", str(tmp_path / "absent.toml"))
    settings = load_settings()
    store = Store.from_settings(settings)
    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for i in range(4):
        Image.new("RGB", (12, 12), (50 * i, 80, 80)).save(folder / f"{i}.png")
        rows.append({"id": f"s{i}", "path": f"{i}.png", "label": "cat" if i % 2 else "dog",
                     "caption": f"a photo {i}"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset_id = ingest(store, folder / "manifest.jsonl", settings, name="captioned")
    run_id = run_store.create_run(store, dataset_id, {})
    run_store.write_scores(store, run_id, pd.DataFrame({
        "sample_id": ["s0", "s0"], "detector": ["caption_check", "pixel_check"],
        "score": [0.3, 0.9], "is_issue": [True, False],
        "details": [json.dumps({"reason": "caption names another thing"}),
                    json.dumps({"reason": "sharp enough"})]}))
    run_store.finish_run(store, run_id, "succeeded", summary={"detectors": FACTS})


@pytest.mark.reliability
def test_the_caption_shows_what_the_consistency_detectors_found(captioned) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.session_state["example_sample"] = "s0"
    at.switch_page("pages/example.py").run()
    assert not at.exception, [e.value for e in at.exception]
    texts = [t.value for t in at.text]
    assert "caption: a photo 0" in texts
    assert "image-text agreement (caption_check): 0.30 - caption names another thing" in texts
    assert not any("pixel_check" in text for text in texts)
