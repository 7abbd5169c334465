"""A real store for the dashboard tests: the demo dataset (real PNGs, ingested) and one
succeeded run whose score rows follow the demo's recorded truth.

The run is written through ``audit.store.runs`` like a worker would, without running models:
a planted label flip is flagged by label_issue with the true label suggested, an outlier by
outlier, a duplicate pair by near_duplicate, a caption mismatch by vl_consistency; every other
score is high. The demo is built once per test session; each test gets its own copy of the
database file (images are read from the one demo folder).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.demo import generate_demo
from audit.settings import load_settings
from audit.store import Store
from audit.store import runs as run_store
from audit.store.datasets import samples_frame
from tests.conftest import kill_workers_of
from tests.dashboard.server import PROJECT_ROOT, demo_copy_env, serving

DETECTORS = ["image_quality", "knn_label", "label_issue", "near_duplicate", "outlier",
             "overall", "training_dynamics", "vl_consistency"]
APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def demo_store_template(tmp_path_factory) -> dict:
    """Build the scored demo once: returns the database file, dataset id, run id and truth."""
    home = tmp_path_factory.mktemp("demo_home")
    settings = load_settings(toml_path=home / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(home), "AUDIT_INGEST_WORKERS": "2"})
    store = Store.from_settings(settings)
    manifest, truth_path = generate_demo(home / "demo", seed=0)
    dataset_id = ingest(store, manifest, settings, name="demo")
    truth = json.loads(truth_path.read_text())
    run_id = write_truth_run(store, dataset_id, truth)
    return {"db": settings.db_path, "dataset_id": dataset_id, "run_id": run_id, "truth": truth}


@pytest.fixture
def app_home(demo_store_template, tmp_path, monkeypatch):
    """A private data home holding a copy of the scored demo, set in the environment the way
    ``python -m audit serve`` sets it for the dashboard."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(demo_store_template["db"], home / "audit.duckdb")
    monkeypatch.setenv("AUDIT_DATA_HOME", str(home))
    monkeypatch.setenv("AUDIT_CONFIG", str(home / "absent.toml"))
    settings = load_settings()
    yield {**demo_store_template, "home": home, "settings": settings,
           "store": Store.from_settings(settings)}
    kill_workers_of(home)


@pytest.fixture
def served(demo_store_template, tmp_path):
    """The scored demo served by ``python -m audit serve`` in its own process group (the
    browser tests'; a test module may define its own)."""
    home, env = demo_copy_env(demo_store_template, tmp_path)
    with serving(env, PROJECT_ROOT) as url:
        yield {"url": url, "store": Store(home / "audit.duckdb"), **demo_store_template}


def text_lines(at: AppTest) -> list[str]:
    """Every line of the page's plain-text elements (a card's labels are one element)."""
    return [line for element in at.text for line in element.value.splitlines()]


def caption_lines(at: AppTest) -> list[str]:
    """Every line of the page's captions (a card's flags and reason are one caption)."""
    return [line for element in at.caption for line in element.value.split("  \n")]


def run_until_job_ends(at: AppTest, job_key: str, deadline_s: float = 300) -> AppTest:
    """Rerun the page until the job it queued under ``job_key`` has ended (a real worker runs
    it); a generous deadline, so a busy machine only makes it slower."""
    deadline = time.monotonic() + deadline_s
    while job_key in at.session_state and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert job_key not in at.session_state, f"the job under {job_key!r} never ended"
    return at


def write_truth_run(store: Store, dataset_id: int, truth: dict) -> int:
    samples = samples_frame(store, dataset_id)
    usable = samples[samples["load_error"].isna()].reset_index(drop=True)
    run_id = run_store.create_run(store, dataset_id, {"detectors": DETECTORS})
    run_store.write_scores(store, run_id, truth_scores(usable, truth))
    run_store.write_run_samples(store, run_id, run_facts(usable, truth))
    run_store.finish_run(store, run_id, "succeeded",
                         skipped={"vl_consistency": "needs clip, which this run does not have"},
                         notes={"samples": "2 of 1829 samples have unreadable images"})
    return run_id


def truth_scores(samples: pd.DataFrame, truth: dict) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    planted = _planted(samples, truth)
    frames = []
    for detector in DETECTORS:
        flagged = planted.get(detector, {})
        score = np.where([s in flagged for s in samples["sample_id"]],
                         rng.uniform(0.0, 0.1, len(samples)), rng.uniform(0.5, 1.0, len(samples)))
        frames.append(pd.DataFrame({
            "sample_id": samples["sample_id"], "detector": detector, "score": score,
            "is_issue": [s in flagged for s in samples["sample_id"]],
            "details": [json.dumps(flagged.get(s, {"reason": f"{detector}: nothing unusual"}))
                        for s in samples["sample_id"]],
        }))
    return pd.concat(frames, ignore_index=True)


def _planted(samples: pd.DataFrame, truth: dict) -> dict[str, dict[str, dict]]:
    known = set(samples["sample_id"])
    flips = {s: {"reason": "the probe is confident this is another class",
                 "suggested_label": t["true_label"], "suggested_confidence": 0.9,
                 "top_classes": [[t["true_label"], 0.9], [t["given_label"], 0.05]]}
             for s, t in truth["label_flip"].items() if s in known}
    pairs = [p for p in truth["near_duplicate"] if all(s in known for s in p)]
    duplicates = {a: {"reason": "almost the same image as another", "duplicate_of": [b],
                      "set_id": i} for i, (a, b) in enumerate(pairs)}
    return {
        "label_issue": flips,
        "knn_label": {s: {"reason": "its neighbours carry another label",
                          "neighbors": sorted(known - {s})[:5]} for s in flips},
        "outlier": {s: {"reason": "far from every other image"} for s in truth["outlier"]
                    if s in known},
        "near_duplicate": duplicates,
        "vl_consistency": {s: {"reason": "the caption names another digit"}
                           for s in truth["caption_mismatch"] if s in known},
    }


def run_facts(samples: pd.DataFrame, truth: dict) -> pd.DataFrame:
    flips = truth["label_flip"]
    predicted = [flips[s]["true_label"] if s in flips else label
                 for s, label in zip(samples["sample_id"], samples["label"])]
    angle = np.linspace(0, 6 * np.pi, len(samples))
    return pd.DataFrame({
        "sample_id": samples["sample_id"], "fold": np.arange(len(samples)) % 5,
        "predicted_label": predicted, "predicted_confidence": 0.9,
        "map_x": np.cos(angle) * angle, "map_y": np.sin(angle) * angle,
    })
