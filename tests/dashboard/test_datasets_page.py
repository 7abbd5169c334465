"""The Datasets page on a fresh store: the audit form offers every registered detector, with
what each one judges, before any run has scored anything."""

from __future__ import annotations

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.detectors import REGISTRY
from tests.dashboard.conftest import APP

TIMEOUT = 60


@pytest.fixture
def fresh_home(data_home, settings, store, tmp_path, monkeypatch):
    """A store holding one small dataset and no run, set in the environment as `serve` does."""
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (i * 90, 40, 40)).save(tmp_path / "pets" / label / f"{i}.png")
    ingest(store, tmp_path / "pets", settings, name="pets")
    monkeypatch.setenv("AUDIT_DATA_HOME", str(data_home))
    monkeypatch.setenv("AUDIT_CONFIG", str(data_home / "absent.toml"))
    return data_home


def test_a_fresh_store_offers_every_registered_detector(fresh_home):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception, [e.value for e in at.exception]
    picker = at.multiselect(key="audit_detectors")
    assert picker.options == [f"{name} ({REGISTRY[name].family})" for name in sorted(REGISTRY)]
    assert "vl_consistency (consistency)" in picker.options
