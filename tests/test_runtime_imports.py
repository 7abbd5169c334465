"""What the light paths load at run time, not only at import: each check runs the real code in a
fresh interpreter and reads ``sys.modules`` afterwards.

Reading the detector registry, validating an audit config and queueing an audit (``python -m
audit run NAME``) must not load a model library; neither may the dashboard process, whatever
page it shows or when it queues an audit. Only the worker that runs the audit loads them.
tests/test_layering.py checks the imports of each layer; these checks also see the imports a
function makes when it is called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from audit.ingest import ingest
from audit.plan import run_audit
from jobs.liveness import register_worker, unregister_worker
from tests.conftest import PROJECT_ROOT

MODEL_LIBRARIES = ("torch", "cleanlab", "open_clip", "timm", "faiss", "sklearn", "ray")
APP = PROJECT_ROOT / "dashboard" / "app.py"
PAGES = ["explore", "example", "insights", "datasets", "jobs", "export"]
AUDITED = {"embedder": "pixels", "probe": "logistic", "folds": 2, "k": 3,
           "detectors": ["label_issue", "knn_label", "outlier", "near_duplicate", "overall"]}


@pytest.fixture
def dataset_home(data_home: Path, settings, store, tmp_path: Path) -> Path:
    """A data home with one small dataset ("pets") audited once (in this process, so the pages
    have scores to show), and this test process standing in as the live worker, so queueing an
    audit starts no worker (it would load torch)."""
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 60, 40, 120)).save(tmp_path / "pets" / label / f"{i}.png")
    dataset_id = ingest(store, tmp_path / "pets", settings, name="pets")
    run_audit(store, settings, dataset_id, AUDITED)
    worker_file = register_worker(data_home)
    yield data_home
    unregister_worker(worker_file)


def _models_loaded_by(script: str, data_home: Path) -> list[str]:
    """Run ``script`` in a fresh interpreter; the model libraries in its ``sys.modules`` then."""
    report = (f"\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in "
              f"sys.modules}} & set({MODEL_LIBRARIES!r}))))\n")
    env = dict(os.environ, AUDIT_DATA_HOME=str(data_home), PYTHONPATH=str(PROJECT_ROOT),
               AUDIT_CONFIG=str(data_home / "absent.toml"))
    out = subprocess.run([sys.executable, "-c", script + report], capture_output=True, text=True,
                         env=env, cwd=PROJECT_ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_registry_validation_and_queueing_an_audit_load_no_model_library(dataset_home) -> None:
    script = (
        "from audit.detectors import REGISTRY\n"
        "from audit.config import AuditConfig\n"
        "from audit.settings import load_settings\n"
        "from audit.cli import main\n"
        "assert 'vl_consistency' in REGISTRY\n"
        "AuditConfig.from_dict({'detectors': sorted(REGISTRY)}, load_settings())\n"
        "assert main(['run', 'pets']) == 0\n"   # what `python -m audit run pets` runs
        "from jobs.queue import list_jobs\n"
        "from audit.store import Store\n"
        "assert list_jobs(Store.from_settings(load_settings()))['status'].tolist() == ['queued']\n"
    )
    assert _models_loaded_by(script, dataset_home) == []


def test_the_dashboard_process_loads_no_model_library(dataset_home) -> None:
    """Every page shown, then an audit queued from the Datasets page, in one app session."""
    script = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(APP)!r}, default_timeout=300).run()\n"
        f"for page in {PAGES!r}:\n"
        "    at.switch_page(f'pages/{page}.py').run()\n"
        "    assert not at.exception, (page, [e.value for e in at.exception])\n"
        "at.switch_page('pages/datasets.py').run()\n"
        "next(b for b in at.button if b.label == 'Queue audit').click().run()\n"
        "assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]\n"
        "assert any('Queued job' in s.value for s in at.success), 'no job was queued'\n"
    )
    assert _models_loaded_by(script, dataset_home) == []
