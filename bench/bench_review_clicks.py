"""The review loop's clicks in a real browser, timed from the click until the page shows the
result (issue 10's bars): a page change, a filter change, a decision from a card and opening an
example, plus the first page of a newly finished run.

The store is ``bench_explore``'s synthetic one (N samples, 8 detectors' scores, the run's
Explore index built as the worker builds it when a run succeeds), served by
``python -m audit serve`` and driven by Debian's headless Chromium through Playwright. "Shown"
means: the script's run has ended, the change is on the page (the grid's first card, the card's
decision badge, the example's id) and every image has loaded.

A newly finished run is a re-audit of the same dataset (new scores from another seed) written
while the server runs and made ready as the worker makes a run ready (its index and its opening
page's thumbnails, ``audit.explore_ready``); each measure gets a run of its own, so no cache of
the server has seen it. Its first page is timed three ways: picked in the sidebar's "Run" list
of the open page (a click, until its grid is shown: the bar), opened by its URL in a new tab of
the same browser, and opened by its URL in a new browser profile (Streamlit's own code fetched
and compiled again).

    python -m bench.bench_review_clicks [--samples 100000] [--clicks 20]

Prints a table; writes the figures as JSON under bench/out/.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from audit.explore_ready import make_ready_for_explore  # noqa: E402
from audit.settings import load_settings  # noqa: E402
from audit.store import Store  # noqa: E402
from bench.bench_explore import (BROWSER_ARGS, CLASSES, DETECTORS, _build,  # noqa: E402
                                 _machine, _percentile, _served)
from bench.figures import save_figures  # noqa: E402
from bench.synthetic_runs import add_synthetic_run  # noqa: E402
from tests.dashboard.server import STILL_JS  # noqa: E402  (the browser tests' "still")

WAIT_MS = 120_000
NEW_RUNS = 3   # newly finished runs timed each way
BARS_MS = {"median": 700, "p95": 1_500, "first page": 2_000}
CARDS_48 = "document.querySelectorAll(\"[class*='st-key-open-']\").length === 48"
VIEWPORT = {"width": 1600, "height": 1000}
FIRST_CARD = ("(() => { const c = document.querySelector(\"[class*='st-key-open-']\");"
              " return c ? c.className.match(/st-key-open-(\\S+)/)[1] : null; })()")


def main() -> None:
    args = _parser().parse_args()
    figures = {"samples": args.samples, "clicks": args.clicks, "machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="bench_clicks_") as tmp:
        home = Path(tmp)
        store = Store(home / "audit.duckdb")
        dataset_id, _ = _build(store, args.samples, figures)
        figures["browser"] = _browser(home, store, dataset_id, args.samples, args.clicks)
    _print_table(figures)
    save_figures(f"bench_review_clicks_{figures['samples']}", figures)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks of each kind")
    return parser


def _browser(home: Path, store: Store, dataset_id: int, samples: int, clicks: int) -> dict:
    from playwright.sync_api import sync_playwright

    with _served(home) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            server_start_ms = _first_page(page, url)
            times = {"page change": _page_changes(page, clicks),
                     "filter change": _filter_changes(page, clicks),
                     "decision (card button)": _decisions(page, clicks),
                     "open example": _open_examples(page, clicks)}
            new_runs = _newly_finished_runs(browser, page, store, home, url, dataset_id, samples)
        finally:
            browser.close()
    figures = {name: {"median_ms": statistics.median(ms), "p95_ms": _percentile(ms, 95),
                      "all_ms": [round(m) for m in ms]} for name, ms in times.items()}
    figures.update({name: {"median_ms": statistics.median(ms), "all_ms": [round(m) for m in ms]}
                    for name, ms in new_runs.items()})
    figures["first page after the server starts (cold)"] = {"ms": server_start_ms}
    return figures


def _newly_finished_runs(browser, page, store: Store, home: Path, url: str, dataset_id: int,
                         samples: int) -> dict[str, list[float]]:
    """The first page of ``NEW_RUNS`` newly finished re-audits each way, a new run each time."""
    settings = load_settings(toml_path=home / "absent.toml", env={"AUDIT_DATA_HOME": str(home)})
    def in_new_tab(run_id: int, context) -> float:
        tab = context.new_page()
        try:
            return _first_page(tab, f"{url}/?dataset={dataset_id}&run={run_id}")
        finally:
            tab.close()

    def in_new_profile(run_id: int) -> float:
        profile = browser.new_context(viewport=VIEWPORT)
        try:
            return in_new_tab(run_id, profile)
        finally:
            profile.close()

    ways = {"new run: picked in the sidebar": lambda run_id: _pick_run(page, run_id),
            "new run: its URL in a new tab": lambda run_id: in_new_tab(run_id, page.context),
            "new run: its URL in a new browser profile": in_new_profile}
    times = {way: [] for way in ways}
    for seed in range(1, NEW_RUNS + 1):
        for way, first_page in ways.items():
            run_id = add_synthetic_run(store, dataset_id, samples, DETECTORS, seed, CLASSES)
            make_ready_for_explore(store, settings, run_id)   # what the worker does at run end
            times[way].append(first_page(run_id))
    return times


def _pick_run(page, run_id: int) -> float:
    """Reload the open page (untimed: how its sidebar learns of the new run), open the "Run"
    list and time the click on the new run until its first page is shown."""
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(f"{CARDS_48} && {STILL_JS}", timeout=WAIT_MS)
    page.get_by_test_id("stSidebar").get_by_text("Run", exact=True).locator(
        "xpath=ancestor::div[contains(@class, 'stSelectbox')]").click()
    option = page.get_by_role("option", name=re.compile(rf"^run {run_id} \("))
    shown = f"new URLSearchParams(location.search).get('run') === arg && {CARDS_48}"
    return _timed_until(page, option.click, shown, str(run_id))


def _first_page(page, url: str) -> float:
    """From navigation until the grid's 48 cards and their images are shown."""
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(f"{CARDS_48} && {STILL_JS}", timeout=WAIT_MS)
    return (time.perf_counter() - start) * 1000


def _timed_until(page, click, shown_js: str, arg=None) -> float:
    """Milliseconds from the click event in the page until the page first shows the result,
    both read from the page's clock (``performance.now()``), checked every animation frame:
    the driver's own checks before it clicks are not counted."""
    page.evaluate("() => { window.__clicked = null; document.addEventListener('click', "
                  "() => { window.__clicked = performance.now(); }, "
                  "{capture: true, once: true}); }")
    click()
    page.wait_for_function(
        f"(arg) => {{ if (window.__clicked === null || !(({shown_js}) && {STILL_JS})) "
        "return false; window.__shown = performance.now(); return true; }",
        arg=arg, timeout=WAIT_MS)
    return page.evaluate("() => window.__shown - window.__clicked")


def _first_card(page) -> str:
    return page.evaluate(FIRST_CARD)


def _card_key(page, widget: str, i: int) -> str:
    """The sample id in the key of the i-th card's ``widget`` (``open``, ``card_keep`` ...)."""
    return page.evaluate(f"Array.from(document.querySelectorAll(\"[class*='st-key-{widget}-']\"))"
                         f"[{i}].className.match(/st-key-{widget}-(\\S+)/)[1]")


def _page_changes(page, clicks: int) -> list[float]:
    """Next page, then back, alternately (PageDown/PageUp's buttons)."""
    main = page.get_by_test_id("stMain")
    times = []
    for i in range(clicks):
        before = _first_card(page)
        button = main.locator(".st-key-page_next button" if i % 2 == 0 else
                              ".st-key-page_prev button")
        times.append(_timed_until(page, button.click, f"{FIRST_CARD} !== arg", before))
    return times


def _filter_changes(page, clicks: int) -> list[float]:
    """The "Worst first" toggle, flipped each time: a new order over the same filter."""
    main = page.get_by_test_id("stMain")
    toggle = main.locator(".st-key-worst_first").get_by_text("Worst first", exact=True)
    times = []
    for _ in range(clicks):
        before = _first_card(page)
        times.append(_timed_until(page, toggle.click, f"{FIRST_CARD} !== arg", before))
    return times


def _card_click(page, widget: str, i: int, shown_js: str) -> float:
    """Click the i-th card's ``widget`` button; the time until ``shown_js`` holds (``arg``
    in it is the card's sample id)."""
    sample_id = _card_key(page, widget, i)
    button = page.get_by_test_id("stMain").locator(f".st-key-{widget}-{sample_id} button").first
    return _timed_until(page, button.click, shown_js, sample_id)


def _decisions(page, clicks: int) -> list[float]:
    """Keep on the i-th card of the page, until its badge says kept."""
    kept = ("(() => { let card = document.querySelector('.st-key-card_keep-' + arg);"
            " while (card && !card.querySelector('img')) card = card.parentElement;"
            " return card !== null && card.innerText.includes('kept'); })()")
    return [_card_click(page, "card_keep", i, kept) for i in range(clicks)]


def _open_examples(page, clicks: int) -> list[float]:
    """Details on the i-th card until the example's id shows; back to Explore (not timed)."""
    main = page.get_by_test_id("stMain")
    times = []
    for i in range(clicks):
        times.append(_card_click(page, "open", i,
                                 "document.body.innerText.includes('id: ' + arg)"))
        main.get_by_role("link", name="Back to Explore").click()
        page.wait_for_function(f"{CARDS_48} && {STILL_JS}", timeout=WAIT_MS)
    return times


def _print_table(figures: dict) -> None:
    print(f"\nReview clicks in Chromium: {figures['samples']:,} samples, "
          f"{figures['machine']['cpus']} CPUs, load {figures['machine']['load_average_at_start']}")
    print(f"{'measure':<52} {'median ms':>10} {'p95 ms':>8}")
    for name, value in figures["browser"].items():
        if "ms" in value:
            print(f"{name:<52} {value['ms']:>10,.0f}")
        elif "p95_ms" not in value:
            print(f"{name:<52} {value['median_ms']:>10,.0f}   each: {value['all_ms']}")
        else:
            print(f"{name:<52} {value['median_ms']:>10,.0f} {value['p95_ms']:>8,.0f}")
    print(f"bars: median <= {BARS_MS['median']} ms, p95 <= {BARS_MS['p95']} ms, "
          f"first page <= {BARS_MS['first page']} ms")


if __name__ == "__main__":
    main()
