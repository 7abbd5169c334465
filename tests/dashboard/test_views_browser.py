"""Views that last, in a real browser (issue 10, item 3): a filter and a page changed by clicks
go into the URL, and a reload, the copied link opened in another browser, or a visit to an
example and back shows the same view. ``python -m audit serve`` on a free loopback port,
Debian's headless Chromium via Playwright."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from audit.store.explore import ExploreFilters, explore_page
from tests.dashboard.server import CHROMIUM, WAIT_MS, chromium, open_explore, wait_until_still

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]



def _card_caption(row) -> str:
    return f"{row.split} · {PurePosixPath(row.path).name}"


def _page_of_everything(served, page: int):
    """Explore's page ``page`` with "Flagged only" off (every sample, by overall, worst first)."""
    result = explore_page(served["store"], served["dataset_id"], served["run_id"],
                          ExploreFilters(flagged_only=False, sort_by="overall"), page - 1, 48)
    return result.total, list(result.rows.itertuples(index=False))


def _expect_view(page, total: int, first_card: str, other_page_card: str) -> None:
    """Every sample listed, "Flagged only" off, and the cards of the expected page."""
    from playwright.sync_api import expect

    main = page.get_by_test_id("stMain")
    expect(main.get_by_text(f"{total:,} matching samples")).to_be_visible(timeout=WAIT_MS)
    expect(main.get_by_role("checkbox", name="Flagged only")).not_to_be_checked(timeout=WAIT_MS)
    expect(main.get_by_text(first_card, exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(main.get_by_text(other_page_card, exact=True)).to_have_count(0, timeout=WAIT_MS)


def test_a_filter_and_a_page_survive_a_reload_a_copied_link_and_an_example(served):
    from playwright.sync_api import expect

    total, page_one = _page_of_everything(served, 1)
    _, page_two = _page_of_everything(served, 2)
    with chromium() as browser:
        page = open_explore(browser, served["url"])
        main = page.get_by_test_id("stMain")
        main.get_by_text("Flagged only", exact=True).click()
        _expect_view(page, total, _card_caption(page_one[0]), _card_caption(page_two[0]))
        main.get_by_role("button", name="Page 2", exact=True).click()
        _expect_view(page, total, _card_caption(page_two[0]), _card_caption(page_one[0]))
        page.wait_for_url(re.compile(r"[?&]page=2(&|$)"), timeout=WAIT_MS)
        link = page.url
        assert re.search(r"[?&]flagged=false(&|$)", link), link
        assert f"dataset={served['dataset_id']}" in link and f"run={served['run_id']}" in link

        page.reload(wait_until="domcontentloaded")
        _expect_view(page, total, _card_caption(page_two[0]), _card_caption(page_one[0]))
        assert page.url == link

        elsewhere = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        elsewhere.goto(link, wait_until="domcontentloaded")
        _expect_view(elsewhere, total, _card_caption(page_two[0]),
                     _card_caption(page_one[0]))

        wait_until_still(page)
        main.get_by_role("button", name="Details", exact=True).first.click()
        expect(main.get_by_text("Decision history")).to_be_visible(timeout=WAIT_MS)
        page.wait_for_url(re.compile(r"[?&]sample="), timeout=WAIT_MS)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Explore").click()
        _expect_view(page, total, _card_caption(page_two[0]), _card_caption(page_one[0]))
        page.wait_for_url(re.compile(r"[?&]page=2(&|$)"), timeout=WAIT_MS)
        assert re.search(r"[?&]flagged=false(&|$)", page.url), page.url
