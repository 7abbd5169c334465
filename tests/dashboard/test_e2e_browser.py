"""End to end in a real browser: ``python -m audit serve`` on a free loopback port, Debian's
headless Chromium driven by Playwright, a decision made in the page, checked in the store."""

from __future__ import annotations

import re

import pytest

from audit.store.explore import ExploreFilters, default_sort, ensure_explore_index, explore_page
from audit.store.flags import decision_log
from tests.dashboard.server import CHROMIUM, PROJECT_ROOT, WAIT_MS, chromium, keyed, open_explore

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]



def test_decide_in_the_browser_lands_in_the_store(served):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    sort_by = default_sort(ensure_explore_index(served["store"], served["run_id"]))
    first = explore_page(served["store"], served["dataset_id"], served["run_id"],
                         ExploreFilters(flagged_only=True, sort_by=sort_by),
                         page_size=1).rows["sample_id"].item()
    with chromium() as browser:
        page = open_explore(browser, served["url"])
        page.screenshot(path=str(ARTIFACTS / "explore.png"))
        main = page.get_by_test_id("stMain")  # the page itself, not the sidebar
        expect(main.locator("[class*='st-key-open-']").first).to_have_class(  # the first card
            re.compile(rf"\bst-key-open-{first}\b"))
        keyed(main, f"open|{first}").get_by_role("button").click()
        expect(page.get_by_text("Decision history")).to_be_visible(timeout=WAIT_MS)
        expect(main.get_by_text(f"id: {first}", exact=True)).to_be_visible(timeout=WAIT_MS)
        main.get_by_role("button", name=re.compile(r"^Remove")).click()  # + its shortcut hint
        expect(page.get_by_text("remove recorded")).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "example.png"))
    log = decision_log(served["store"], served["dataset_id"])
    assert log[["sample_id", "action"]].values.tolist() == [[first, "remove"]]
