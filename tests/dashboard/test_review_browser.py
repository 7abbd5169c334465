"""The keyboard review loop in a real browser (issue 10): ``python -m audit serve`` on a free
loopback port, Debian's headless Chromium via Playwright. Open an example from Explore, decide
with a key, land on the next sample of Explore's order, undo with a key and land back."""

from __future__ import annotations

import pytest

from audit.store.explore import ExploreFilters, default_sort, ensure_explore_index, explore_page
from audit.store.flags import current_decisions, decision_log
from tests.dashboard.server import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]



def _first_two_of_explore(served) -> list[str]:
    store = served["store"]
    sort_by = default_sort(ensure_explore_index(store, served["run_id"]))
    rows = explore_page(store, served["dataset_id"], served["run_id"],
                        ExploreFilters(flagged_only=True, sort_by=sort_by), page_size=2).rows
    return rows["sample_id"].tolist()


def test_decide_with_a_key_advance_and_undo_with_a_key(served):
    from playwright.sync_api import expect, sync_playwright

    first, second = _first_two_of_explore(served)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(served["url"], wait_until="domcontentloaded")
            main = page.get_by_test_id("stMain")
            expect(main.get_by_text("matching samples")).to_be_visible(timeout=90_000)
            main.get_by_role("button", name="Details", exact=True).first.click()
            expect(main.get_by_text(f"id: {first}", exact=True)).to_be_visible(timeout=120_000)
            main.get_by_role("heading", name="Example").click()   # focus the page, not an input

            page.keyboard.press("x")                              # remove, then the next one
            expect(main.get_by_text(f"id: {second}", exact=True)).to_be_visible(timeout=120_000)
            assert _standing(served) == {first: "remove"}

            main.get_by_role("heading", name="Example").click()
            page.keyboard.press("u")                              # back to it, withdrawn
            expect(main.get_by_text(f"id: {first}", exact=True)).to_be_visible(timeout=120_000)
            expect(main.get_by_text("undecided", exact=True)).to_be_visible(timeout=120_000)
        finally:
            browser.close()
    assert _standing(served) == {}
    log = decision_log(served["store"], served["dataset_id"])
    assert log[["sample_id", "action"]].values.tolist() == [[first, "remove"], [first, "undo"]]


def _standing(served) -> dict[str, str]:
    standing = current_decisions(served["store"], served["dataset_id"])
    return dict(zip(standing["sample_id"], standing["action"]))
