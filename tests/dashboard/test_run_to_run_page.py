"""Run to run in the app (AppTest on the scored demo store): a rerun with planted changes,
the comparison on Insights drilled into Explore, and the "Compare with the previous run"
button of the Jobs and Datasets pages."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.settings import load_settings
from audit.store import Store
from audit.store import jobs as job_store
from audit.store import runs as run_store
from audit.store.datasets import samples_frame
from tests.dashboard.conftest import APP
from tests.dashboard.server import CHROMIUM, PROJECT_ROOT, WAIT_MS, chromium, demo_copy_env, \
    serving, wait_until_still
from tests.dashboard.test_escaping import SCRIPT, _assert_inert, hostile  # noqa: F401

TIMEOUT = 60


def _rerun_with_changes(home: dict, unflag: list[str], flag: list[str]) -> int:
    """A succeeded rerun whose scores are the truth run's, except that no detector flags the
    samples in ``unflag`` any more and label_issue newly flags those in ``flag``."""
    store = home["store"]
    scores = run_store.scores_frame(store, home["run_id"])
    scores.loc[scores["sample_id"].isin(unflag), ["is_issue", "score"]] = [False, 0.9]
    newly = scores["sample_id"].isin(flag) & (scores["detector"] == "label_issue")
    scores.loc[newly, ["is_issue", "score"]] = [True, 0.05]
    run_id = run_store.create_run(store, home["dataset_id"], {"rerun": True})
    run_store.write_scores(store, run_id, scores)
    run_store.finish_run(store, run_id, "succeeded", skipped={}, notes={})  # as the worker does
    return run_id


@pytest.fixture
def rerun(app_home) -> dict:
    """Two flips no longer flagged by anything, three clean samples newly flagged."""
    flips = sorted(app_home["truth"]["label_flip"])
    scores = run_store.scores_frame(app_home["store"], app_home["run_id"])
    flagged = set(scores.loc[scores["is_issue"], "sample_id"])
    clean = sorted(set(scores["sample_id"]) - flagged)
    planted = {"unflag": flips[:2], "flag": clean[:3]}
    unflagged = int(scores.loc[scores["sample_id"].isin(flips[:2]), "is_issue"].sum())
    return {**planted, "unflagged_verdicts": unflagged,
            "run_b": _rerun_with_changes(app_home, **planted)}


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _start() -> AppTest:
    return _ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())


def _run_to_run(at: AppTest) -> AppTest:
    at.session_state["insights_open_tab"] = "Run to run"
    return _ok(at.switch_page("pages/insights.py").run())


def _total(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if c.value.endswith("matching samples"))
    return int(re.match(r"([\d,]+) ", caption).group(1).replace(",", ""))


def _picks(at: AppTest) -> list[str]:
    return [c.key.removeprefix("pick|") for c in at.checkbox if c.key and c.key.startswith("pick|")]


def _landed_on(at: AppTest, title: str, page: str) -> AppTest:
    """The app switched pages itself; AppTest's next runs follow (as a browser's URL does)."""
    assert at.title[0].value == title
    return at.switch_page(page)


def _has_button(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


def test_comparison_table_counts_the_planted_changes(app_home, rerun):
    at = _run_to_run(_start())
    assert at.selectbox(key="compare_first").value == app_home["run_id"]
    assert at.selectbox(key="compare_second").value == rerun["run_b"]
    table = at.dataframe(key="compare_by_detector").value.set_index("detector")
    flips = len(app_home["truth"]["label_flip"])
    assert table.loc["label_issue", ["flagged_a", "newly_flagged", "no_longer_flagged",
                                     "still_flagged"]].tolist() == [flips, 3, 2, flips - 2]
    assert table.loc["knn_label", ["newly_flagged", "no_longer_flagged"]].tolist() == [0, 2]
    assert table.loc["outlier", ["newly_flagged", "no_longer_flagged"]].tolist() == [0, 0]


def test_newly_flagged_opens_exactly_those_samples_in_explore(app_home, rerun):
    at = _run_to_run(_start())
    _ok(at.selectbox(key="compare_detector").set_value("label_issue").run())
    assert at.button(key="compare_open|newly flagged").label == "Show the 3 newly flagged in Explore"
    _ok(at.button(key="compare_open|newly flagged").click().run())
    _landed_on(at, "Explore", "pages/explore.py")
    assert _total(at) == 3 and sorted(_picks(at)) == rerun["flag"]
    assert at.info[0].value.startswith("Showing only the samples flagged by label")
    assert at.session_state[f"run_id_{app_home['dataset_id']}"] == rerun["run_b"]
    _ok(at.button(key="clear_run_change").click().run())
    assert _total(at) > 3  # back to every flagged sample of run B


def test_no_longer_flagged_shows_samples_no_detector_flags_any_more(app_home, rerun):
    at = _run_to_run(_start())
    _ok(at.selectbox(key="compare_detector").set_value("label_issue").run())
    _ok(at.button(key="compare_open|no longer flagged").click().run())
    # "Flagged only" would hide them: it is off while the change is shown
    assert at.checkbox(key="flagged").disabled
    assert _total(at) == 2 and sorted(_picks(at)) == rerun["unflag"]


def test_one_class_of_a_change(app_home, rerun):
    labels = samples_frame(app_home["store"], app_home["dataset_id"]).set_index("sample_id")
    label = labels.loc[rerun["unflag"][0], "label"]
    no_longer = [s for s in rerun["unflag"] if labels.loc[s, "label"] == label]
    newly = [s for s in rerun["flag"] if labels.loc[s, "label"] == label]
    at = _run_to_run(_start())
    _ok(at.selectbox(key="compare_detector").set_value("label_issue").run())
    _ok(at.selectbox(key="compare_class").set_value(label).run())
    assert at.button(key="compare_open|newly flagged").label == (
        f"Show the {len(newly)} newly flagged in Explore")
    button = at.button(key="compare_open|no longer flagged")
    assert button.label == f"Show the {len(no_longer)} no longer flagged in Explore"
    _ok(button.click().run())
    assert sorted(_picks(at)) == sorted(no_longer)
    assert "of class" in at.info[0].value


def _demo_job(app_home) -> int:
    return job_store.insert_job(app_home["store"], app_home["dataset_id"], "audit", {"k": 7})


def test_jobs_offers_no_comparison_before_a_rerun(app_home):
    _demo_job(app_home)
    at = _ok(_start().switch_page("pages/jobs.py").run())
    assert not _has_button(at, "job_compare")


def test_jobs_opens_the_comparison_of_the_jobs_dataset_newest_two_runs(app_home, rerun,
                                                                      tmp_path):
    newest = _rerun_with_changes(app_home, unflag=[], flag=[])
    other = _small_dataset(app_home, tmp_path)
    _demo_job(app_home)
    at = _start()
    at.session_state["dataset_id"] = other  # the sidebar shows another dataset
    at.session_state["compare_first"] = app_home["run_id"]
    at = _ok(at.switch_page("pages/jobs.py").run())
    _ok(at.button(key="job_compare").click().run())
    assert at.session_state["dataset_id"] == app_home["dataset_id"]
    assert at.selectbox(key="compare_first").value == rerun["run_b"]
    assert at.selectbox(key="compare_second").value == newest
    table = at.dataframe(key="compare_by_detector").value
    # the newest run undoes run B's planted changes
    assert table["newly_flagged"].sum() == rerun["unflagged_verdicts"]
    assert table["no_longer_flagged"].sum() == 3


def test_datasets_opens_the_comparison_of_the_chosen_dataset(app_home, rerun):
    at = _ok(_start().switch_page("pages/datasets.py").run())
    _ok(at.button(key="dataset_compare").click().run())
    assert at.selectbox(key="compare_first").value == app_home["run_id"]
    assert at.selectbox(key="compare_second").value == rerun["run_b"]
    table = at.dataframe(key="compare_by_detector").value
    assert table["no_longer_flagged"].sum() == rerun["unflagged_verdicts"]
    assert table["newly_flagged"].sum() == 3


def _small_dataset(app_home, tmp_path) -> int:
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), (90, 40, 40)).save(tmp_path / "pets" / label / "0.png")
    return ingest(app_home["store"], tmp_path / "pets", app_home["settings"], name="pets")


def test_a_hostile_class_stays_text_from_comparison_to_explore(hostile):
    store, dataset_id = hostile["store"], hostile["dataset_id"]
    first = int(run_store.latest_finished_run(store, dataset_id))
    scores = run_store.scores_frame(store, first)
    scores.loc[scores["sample_id"] == "s0", "is_issue"] = False  # s0 is labelled SCRIPT
    second = run_store.create_run(store, dataset_id, {})
    run_store.write_scores(store, second, scores)
    run_store.finish_run(store, second, "succeeded", skipped={}, notes={})
    at = _run_to_run(_start())
    _ok(at.selectbox(key="compare_class").set_value(SCRIPT).run())
    _assert_inert(at)
    _ok(at.button(key="compare_open|no longer flagged").click().run())
    assert _picks(at) == ["s0"]
    assert "<script>" not in at.info[0].value and "script" in at.info[0].value
    _assert_inert(at)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}")
def test_from_a_finished_rerun_to_its_changes_in_a_real_browser(demo_store_template, tmp_path):
    """The Jobs button lives in a self-refreshing fragment; the whole path in Chromium."""
    from playwright.sync_api import expect

    home, env = demo_copy_env(demo_store_template, tmp_path)
    store = Store.from_settings(load_settings(toml_path=tmp_path / "absent.toml",
                                              env={"AUDIT_DATA_HOME": str(home)}))
    demo = {**demo_store_template, "store": store}
    _rerun_with_changes(demo, unflag=[], flag=["d0000", "d0001", "d0002"])
    _demo_job(demo)
    with serving(env, PROJECT_ROOT) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_text("matching samples")).to_be_visible(timeout=60_000)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Jobs").click()
        main = page.get_by_test_id("stMain")
        _click_until(main.get_by_role("button", name=re.compile("Compare with the previous")),
                     main.get_by_text("What changed"))
        detector = main.get_by_test_id("stSelectbox").filter(has_text="Detector")
        option = page.get_by_role("option", name="label_issue", exact=True)
        _click_until(detector, option)
        option.click()
        show = main.get_by_role("button", name="Show the 3 newly flagged in Explore")
        _click_until(show, main.get_by_text("3 matching samples"))


def _click_until(target, appears, tries: int = 5) -> None:
    """Click ``target`` until ``appears`` shows. Each click waits until the app is still and
    the target is scrolled into view: a selectbox opened by the click that also scrolls it
    into view closes again on the scroll event that follows, and a click during a run can
    land on an element the run then redraws."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = target.page
    for _ in range(tries):
        wait_until_still(page)
        if appears.is_visible():      # an earlier click took effect after its wait ended
            return
        try:
            target.scroll_into_view_if_needed(timeout=WAIT_MS)
            page.evaluate(AFTER_TWO_FRAMES)       # the scroll's event has been handled
            target.click(timeout=WAIT_MS)
            appears.wait_for(state="visible", timeout=WAIT_MS)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"{appears} did not show after {tries} clicks on {target}")


AFTER_TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
