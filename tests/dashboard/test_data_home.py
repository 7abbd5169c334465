"""A data home the dashboard cannot write shows one error line, not a traceback (issue 14)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP

pytestmark = pytest.mark.reliability


def test_an_unwritable_data_home_is_one_error_on_the_page(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("AUDIT_DATA_HOME", str(tmp_path / "a-file" / "data"))
    monkeypatch.setenv("AUDIT_CONFIG", str(tmp_path / "absent.toml"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value.replace("\\", "") for e in at.error] == [  # shown as escaped markdown
        f"data home {tmp_path / 'a-file' / 'data'} is not writable (Not a directory); set "
        "data_home in audit.toml or AUDIT_DATA_HOME to a folder you can write, or fix its "
        "permissions"]
