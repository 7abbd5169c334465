"""The whole review loop in a real browser (issue 10): ``python -m audit serve`` on a free
loopback port, Debian's headless Chromium via Playwright.

Explore's first page → an example → decide with a key and land on the next sample of Explore's
order → undo with a key and land back → Explore's second page → accept the suggested labels of
two picked cards → undo that bulk action → reload, and the same view comes back."""

from __future__ import annotations

import re

import pytest

from audit.store.explore import ExploreFilters, default_sort, ensure_explore_index, explore_page
from audit.store.flags import current_decisions, decision_log
from tests.dashboard.server import CHROMIUM, WAIT_MS, chromium, keyed, open_explore, wait_until_still

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
]


def _explore_rows(served, page: int):
    """Explore's page ``page`` as it opens (flagged only, the default sort, worst first)."""
    store = served["store"]
    sort_by = default_sort(ensure_explore_index(store, served["run_id"]))
    return explore_page(store, served["dataset_id"], served["run_id"],
                        ExploreFilters(flagged_only=True, sort_by=sort_by), page - 1, 48).rows


def test_the_review_loop_from_the_first_page_to_a_reload(served):
    from playwright.sync_api import expect

    first, second = _explore_rows(served, 1)["sample_id"].tolist()[:2]
    page_two = _explore_rows(served, 2)
    picks = page_two[page_two["suggested_label"].notna()].head(2)
    assert len(picks) == 2, "the demo's second page should hold two suggested relabels"
    with chromium() as browser:
        page = open_explore(browser, served["url"])
        main = page.get_by_test_id("stMain")
        first_card = main.locator("[class*='st-key-open-']").first
        expect(first_card).to_have_class(re.compile(rf"\bst-key-open-{first}\b"))

        keyed(main, f"open|{first}").get_by_role("button").click()
        _expect_example(main, first)
        main.get_by_role("heading", name="Example").click()   # focus the page, not an input
        page.keyboard.press("x")                              # remove, then the next one
        _expect_example(main, second)
        assert _standing(served) == {first: ("remove", None)}

        main.get_by_role("heading", name="Example").click()
        page.keyboard.press("u")                              # back to it, withdrawn
        _expect_example(main, first)
        expect(main.get_by_text("undecided", exact=True)).to_be_visible(timeout=WAIT_MS)
        assert _standing(served) == {}

        main.get_by_role("link", name="Back to Explore").click()
        expect(first_card).to_have_class(re.compile(rf"\bst-key-open-{first}\b"), timeout=WAIT_MS)
        main.get_by_role("button", name="Page 2", exact=True).click()
        page.wait_for_url(re.compile(r"[?&]page=2(&|$)"), timeout=WAIT_MS)
        expect(keyed(main, f"open|{picks['sample_id'].iloc[0]}")).to_be_visible(timeout=WAIT_MS)
        wait_until_still(page)
        for sample_id in picks["sample_id"]:
            keyed(main, f"pick|{sample_id}").get_by_text("select").click()
        main.get_by_role("button", name="Accept suggested label for 2 selected").click()
        expect(page.get_by_text("relabel: 2 samples")).to_be_visible(timeout=WAIT_MS)
        assert _standing(served) == {s: ("relabel", label) for s, label
                                     in zip(picks["sample_id"], picks["suggested_label"])}

        main.get_by_role("button", name="Undo last bulk action").click()
        expect(page.get_by_text("bulk action undone on 2 samples")).to_be_visible(timeout=WAIT_MS)
        assert _standing(served) == {}

        link = page.url
        page.reload(wait_until="domcontentloaded")
        expect(main.get_by_text("matching samples")).to_be_visible(timeout=WAIT_MS)
        expect(main.locator("[class*='st-key-open-']").first).to_have_class(
            re.compile(rf"\bst-key-open-{page_two['sample_id'].iloc[0]}\b"), timeout=WAIT_MS)
        assert page.url == link

    log = decision_log(served["store"], served["dataset_id"])
    assert log[["sample_id", "action"]].values.tolist()[:2] == [[first, "remove"],
                                                                [first, "undo"]]
    assert sorted(log["action"].tolist()[2:]) == ["relabel", "relabel", "undo", "undo"]


def _expect_example(main, sample_id: str) -> None:
    from playwright.sync_api import expect

    expect(main.get_by_text(f"id: {sample_id}", exact=True)).to_be_visible(timeout=WAIT_MS)


def _standing(served) -> dict[str, tuple[str, str | None]]:
    standing = current_decisions(served["store"], served["dataset_id"])
    return {s: (action, label if isinstance(label, str) else None)
            for s, action, label in zip(standing["sample_id"], standing["action"],
                                        standing["new_label"])}
