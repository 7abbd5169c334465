"""A real dashboard server for the browser tests: ``python -m audit serve`` in its own process
group on a free loopback port, and the Chromium the tests drive."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
WAIT_MS = 90_000   # a generous deadline for anything the page must show, on a busy machine


@contextlib.contextmanager
def chromium():
    """Debian's headless Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_explore(browser, url: str, width: int = 1600, height: int = 1000):
    """A new page on ``url`` (Explore), once its grid is drawn and still; returns the page."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stMain").get_by_text("matching samples")).to_be_visible(
        timeout=WAIT_MS)
    wait_until_still(page)
    return page


STILL_JS = ("document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === "
            "'notRunning' && !document.querySelector('[data-testid=stSkeleton]') && "
            "Array.from(document.images).every(i => i.complete)")


def wait_until_still(page) -> None:
    """Until the script's run has ended, every element is drawn (none is still the placeholder
    shown while its code loads) and every image has loaded: a click then lands on what it aims
    at (while cards are still being drawn, the layout moves under the pointer)."""
    page.wait_for_function(f"() => {STILL_JS}", timeout=WAIT_MS)


def keyed(scope, key: str):
    """The element drawn for the widget with ``key`` (Streamlit marks it ``st-key-<key>``)."""
    return scope.locator(".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip()))


def demo_copy_env(demo_store_template: dict, tmp_path: Path) -> tuple[Path, dict]:
    """A data home holding a copy of the scored demo store, and the environment for a server
    (or any child process) that uses it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(demo_store_template["db"], home / "audit.duckdb")
    env = dict(os.environ, AUDIT_DATA_HOME=str(home), AUDIT_CONFIG=str(tmp_path / "absent.toml"),
               PYTHONPATH=str(PROJECT_ROOT))
    return home, env


@contextlib.contextmanager
def serving(env: dict, cwd: Path) -> Iterator[str]:
    """Serve the dashboard with ``env`` from ``cwd``; yield its URL once it answers, and stop
    the CLI and the Streamlit child it started afterwards."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "audit", "serve", "--port", str(port)],
                              cwd=cwd, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, "the dashboard server exited while starting"
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard did not answer at {url} within {START_TIMEOUT_S} s")
