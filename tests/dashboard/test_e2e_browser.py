"""End to end in a real browser: ``python -m audit serve`` on a free loopback port, Debian's
headless Chromium driven by Playwright, a decision made in the page, checked in the store."""

from __future__ import annotations

import re

import pytest

from audit.store.explore import ExploreFilters, default_sort, ensure_explore_index, explore_page
from audit.store.flags import decision_log
from tests.dashboard.server import CHROMIUM, CHROMIUM_ARGS, PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]



def test_decide_in_the_browser_lands_in_the_store(served):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(served["url"], wait_until="domcontentloaded")
            expect(page.get_by_text("matching samples")).to_be_visible(timeout=60_000)
            expect(page.locator("img").first).to_be_visible(timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "explore.png"))
            main = page.get_by_test_id("stMain")  # the page itself, not the sidebar
            main.get_by_role("button", name="Details", exact=True).first.click()
            expect(page.get_by_text("Decision history")).to_be_visible(timeout=90_000)
            sample_id = main.get_by_text("id: ").first.inner_text().removeprefix("id: ")
            main.get_by_role("button", name=re.compile(r"^Remove")).click()  # + its shortcut hint
            expect(page.get_by_text("remove recorded")).to_be_visible(timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "example.png"))
        finally:
            browser.close()
    log = decision_log(served["store"], served["dataset_id"])
    assert log[["sample_id", "action"]].values.tolist() == [[sample_id, "remove"]]
    sort_by = default_sort(ensure_explore_index(served["store"], served["run_id"]))
    first_card = explore_page(served["store"], served["dataset_id"], served["run_id"],
                              ExploreFilters(flagged_only=True, sort_by=sort_by), page_size=1).rows
    assert first_card["sample_id"].tolist() == [sample_id]  # the page opened Explore's first card
