"""The Export page after hardening (issue 14): "Replace" never deletes a file of yours, the export
runs as a job in the background worker, and the zip is built only when the download button is
clicked, not on every rerun. Since issue 11 the
automatic rules act on train alone unless the user picks other splits, and the page says so."""

from __future__ import annotations

import os

from streamlit.testing.v1 import AppTest

from audit.export import ExportRules, split_rule_text
from dashboard.widgets import plain
from tests.dashboard.conftest import APP, run_until_job_ends

TIMEOUT = 60


def _export_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/export.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_replace_refuses_a_folder_holding_a_file_of_yours(app_home, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious\n")
    (folder / "sieve_export.json").write_text("{}\n")
    at = _export_page()
    at.text_input(key="export_out").input(str(folder))
    at.checkbox(key="export_overwrite").check()
    at.button(key="export_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [plain(
        f"refusing to overwrite {folder}: its sieve_export.json does not list the files a "
        "Sieve export wrote, so it may hold files of yours; empty it yourself or choose "
        "another folder")]
    assert sorted(os.listdir(folder)) == ["notes.txt", "sieve_export.json"]
    assert (folder / "notes.txt").read_text() == "precious\n"
    assert not at.get("download_button")


def test_the_zip_is_built_on_click_not_on_rerun(app_home, tmp_path):
    at = _export_page()
    at.text_input(key="export_out").input(str(tmp_path / "out"))
    at.button(key="export_go").click().run()
    run_until_job_ends(at, "export_job")            # the page's EXPORT_JOB_KEY: a real worker
    assert (tmp_path / "out" / "sieve_export.json").is_file()
    assert any(s.value.startswith("wrote ") for s in at.success), at.success
    at.checkbox(key="export_dedupe").check().run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    button = at.get("download_button")[0].proto
    assert button.deferred_file_id and button.url == ""


def _by_split(at: AppTest):
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    return at.dataframe[0].value.set_index("split")


def test_automatic_rules_spare_val_and_test_unless_chosen(app_home):
    at = _export_page()
    assert at.multiselect(key="export_auto_splits").value == ["train"]
    assert split_rule_text(ExportRules()) in [c.value for c in at.caption]
    at.radio(key="export_rule").set_value("flagged").run()
    at.radio(key="export_suggested").set_value("auto").run()
    by_split = _by_split(at)
    assert by_split.loc["test", "removed"] == by_split.loc["test", "relabelled"] == 0
    assert by_split.loc["train", "removed"] > 0 and by_split.loc["train", "relabelled"] > 0
    rules = at.dataframe[1].value
    assert set(rules[rules["split"] == "test"]["rule"]) == {"none"}

    at.multiselect(key="export_auto_splits").set_value(["train", "test"]).run()
    assert _by_split(at).loc["test", "removed"] > 0
    assert split_rule_text(ExportRules(auto_splits=["train", "test"])) in [
        c.value for c in at.caption]
