"""Pages that showed stale or empty answers depending on what was opened first (issue 10)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP

TIMEOUT = 60


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_insights_opened_before_explore_draws_every_chart(app_home):
    """Insights' charts read the run's Explore index; opened first, before Explore ever built
    it, they came back empty and stayed so (cached per run)."""
    at = _ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT)
             .switch_page("pages/insights.py").run())
    assert at.title[0].value == "Insights"
    captions = [c.value for c in at.caption]
    assert "No detector flagged anything in this run." not in captions
    assert "This run stored no probe predictions." not in captions
    assert "This run stored no 2-D map." not in captions
    assert len(at.get("plotly_chart")) == 8 + 2 + 1 + 1
    _ok(at.switch_page("pages/explore.py").run())
    at = _ok(at.switch_page("pages/insights.py").run())
    assert len(at.get("plotly_chart")) == 8 + 2 + 1 + 1
