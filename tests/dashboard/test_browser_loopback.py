"""Loopback means loopback, and ``serve`` means the same settings (issue 14), in a real browser.

``python -m audit serve`` is started from a folder holding an ``audit.toml`` (``knn_k = 7``, a
relative ``data_home``) with no ``AUDIT_*`` variables, as a user would; headless Chromium opens
every page and records each request and websocket the page makes."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

from tests.dashboard.server import CHROMIUM, PROJECT_ROOT, chromium, serving

# the address a user opens first, then every page (Streamlit sets a page icon only on the first)
PAGES = ["", "explore", "example", "insights", "datasets", "jobs", "export"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.reliability,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]


@pytest.fixture
def served_from_a_folder(demo_store_template, tmp_path):
    """The scored demo, served from ``tmp_path`` whose audit.toml names the data home."""
    (tmp_path / "home").mkdir()
    shutil.copy(demo_store_template["db"], tmp_path / "home" / "audit.duckdb")
    (tmp_path / "audit.toml").write_text('data_home = "home"\nknn_k = 7\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    with serving(env, tmp_path) as url:
        yield url


def _outside(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in LOCAL_SCHEMES and parts.hostname not in LOOPBACK


def test_pages_load_nothing_from_outside_and_use_the_callers_settings(served_from_a_folder):
    from playwright.sync_api import expect

    requested: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda request: requested.append(request.url))
        page.on("websocket", lambda socket: requested.append(socket.url))
        for name in PAGES:
            page.goto(f"{served_from_a_folder}/{name}", wait_until="domcontentloaded")
            sidebar = page.get_by_test_id("stSidebar")
            expect(page.get_by_test_id("stMain")).to_be_visible(timeout=60_000)
            expect(sidebar.get_by_text("Dataset", exact=True)).to_be_visible(timeout=60_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
            if name == "datasets":
                k = page.get_by_label("Neighbours (k)")
                expect(k).to_have_value("7", timeout=30_000)  # audit.toml, not the default
        icon = page.locator("link[rel~='icon']").first.get_attribute("href")
    assert requested, "the browser recorded no request"
    assert [url for url in requested if _outside(url)] == []
    assert not _outside(icon if "//" in icon else f"{served_from_a_folder}/{icon}")
