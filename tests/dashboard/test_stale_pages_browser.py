"""What a person sees change without reloading the page (issue 10), in a real browser: a job
queued and finished while the Jobs page is open, and Explore opened from the Insights map.
``python -m audit serve`` on a free loopback port, Debian's headless Chromium via Playwright."""

from __future__ import annotations

import os
import re

import pytest
from PIL import Image

from audit.ingest import ingest
from audit.store import jobs as job_store
from audit.store import runs as run_store
from tests.dashboard.server import CHROMIUM, PROJECT_ROOT, chromium, demo_copy_env, keyed, serving

NO_RUN_YET = "This dataset has no finished audit yet."
MAIN_SCROLL = "() => document.querySelector('[data-testid=\"stMain\"]').scrollTop"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]


@pytest.fixture
def unaudited(data_home, settings, store, tmp_path):
    """A dataset of four real PNGs and no job or run yet, served as ``serve`` serves it."""
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (i * 90, 60, 40)).save(tmp_path / "pets" / label / f"{i}.png")
    dataset_id = ingest(store, tmp_path / "pets", settings, name="pets")
    env = dict(os.environ, AUDIT_DATA_HOME=str(data_home),
               AUDIT_CONFIG=str(tmp_path / "absent.toml"), PYTHONPATH=str(PROJECT_ROOT))
    with serving(env, PROJECT_ROOT) as url:
        yield {"url": url, "store": store, "dataset_id": dataset_id}


@pytest.fixture
def served_demo(demo_store_template, tmp_path):
    """The scored demo, served by ``python -m audit serve``."""
    _, env = demo_copy_env(demo_store_template, tmp_path)
    with serving(env, PROJECT_ROOT) as url:
        yield url


def _finish_job_with_a_run(store, dataset_id: int) -> None:
    """What a worker on another host writes: claim the job, then its run and the job end."""
    job = job_store.claim_next_job(store, pid=1, host="another-host")
    run_id = run_store.create_run(store, dataset_id, {"detectors": []}, job_id=job["id"])
    run_store.finish_run(store, run_id, "succeeded")
    job_store.finish_job(store, job["id"], "succeeded", result={"run_id": run_id})


def _open(page, url: str, title: str):
    """Open the app at its address, then one page from the sidebar's menu (the first visit
    to a fresh server must be the app's address: a page's own address then skips the
    router). Returns the page's main part and the sidebar."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    main, sidebar = page.get_by_test_id("stMain"), page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Dataset", exact=True)).to_be_visible(timeout=60_000)
    sidebar.get_by_role("link", name=re.compile(title)).click()
    expect(main.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=60_000)
    return main, sidebar


def test_jobs_page_shows_a_job_queued_and_finished_while_it_is_open(unaudited):
    from playwright.sync_api import expect

    store, dataset_id = unaudited["store"], unaudited["dataset_id"]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        main, sidebar = _open(page, unaudited["url"], "Jobs")
        expect(main.get_by_text("No jobs yet", exact=False)).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text(NO_RUN_YET)).to_be_visible(timeout=90_000)

        job_id = job_store.insert_job(store, dataset_id, "audit", {"k": 7})
        expect(main.get_by_text("No jobs yet", exact=False)).to_have_count(0, timeout=90_000)
        expect(main.get_by_role("combobox", name="Job")).to_have_value(f"job {job_id}",
                                                                     timeout=90_000)

        _finish_job_with_a_run(store, dataset_id)
        expect(sidebar.get_by_text(NO_RUN_YET)).to_have_count(0, timeout=90_000)
        expect(sidebar.get_by_role("combobox", name="Run")).to_have_value(
            re.compile(r"^run \d+ \("), timeout=90_000)


def test_explore_opened_from_the_insights_map_starts_at_its_top(served_demo):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        main, _ = _open(page, served_demo, "Insights")
        expect(main.get_by_text("Map of the embeddings")).to_be_visible(timeout=60_000)
        chart = page.locator(".js-plotly-plot", has_text="map_x")  # the map, not another plot
        expect(chart).to_be_visible(timeout=60_000)
        chart.scroll_into_view_if_needed()
        assert page.evaluate(MAIN_SCROLL) > 0   # the map is far down the page
        show = main.get_by_role("button", name=re.compile(r"^Show the \d+ selected"))
        _select_a_box(page, chart, show)
        selected = int(re.search(r"\d+", show.inner_text()).group())
        preview = keyed(main, "map_preview").locator("img")  # the selection's images, at once
        expect(preview).to_have_count(min(selected, 12), timeout=60_000)
        show.click()
        expect(main.get_by_text("selected on the Insights map")).to_be_visible(
            timeout=60_000)
        page.wait_for_function(f"() => ({MAIN_SCROLL})() === 0", timeout=90_000)


def _select_a_box(page, chart, selected, attempts: int = 3) -> None:
    """Drag a box on ``chart`` until ``selected`` shows: a drag while the chart is still being
    drawn or redrawn is lost, so it is tried again (up to ``attempts`` times)."""
    from playwright.sync_api import expect

    for _ in range(attempts - 1):
        _drag_a_box(page, chart.locator(".nsewdrag").first.bounding_box())
        try:
            expect(selected).to_be_visible(timeout=30_000)
            return
        except AssertionError:
            continue
    _drag_a_box(page, chart.locator(".nsewdrag").first.bounding_box())
    expect(selected).to_be_visible(timeout=60_000)


def _drag_a_box(page, area: dict) -> None:
    """A box selection over the middle of a plot's drag area."""
    left, top = area["x"] + area["width"] * 0.3, area["y"] + area["height"] * 0.3
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move(left + area["width"] * 0.4, top + area["height"] * 0.4, steps=10)
    page.mouse.up()
