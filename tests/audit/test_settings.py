"""Settings: defaults -> audit.toml -> AUDIT_* variables, and documentation kept in step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audit.errors import ConfigError
from audit.settings import Settings, field_docs, load_settings
from tests.conftest import PROJECT_ROOT


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    settings = load_settings(toml_path=tmp_path / "none.toml", env={})
    assert settings.data_home == Path("data")
    assert settings.db_path == Path("data") / "audit.duckdb"
    assert settings.host == "127.0.0.1"
    assert settings.knn_k == 10


def test_toml_then_environment_win_in_that_order(tmp_path: Path) -> None:
    toml = tmp_path / "audit.toml"
    toml.write_text('knn_k = 7\nfolds = 3\ndata_home = "/srv/sieve"\n')
    settings = load_settings(toml_path=toml, env={"AUDIT_FOLDS": "4", "AUDIT_UNRELATED": "x"})
    assert (settings.knn_k, settings.folds, settings.data_home) == (7, 4, Path("/srv/sieve"))


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="knn_k='many' is not a valid int"):
        load_settings(toml_path=tmp_path / "none.toml", env={"AUDIT_KNN_K": "many"})
    toml = tmp_path / "audit.toml"
    toml.write_text("knn = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['knn'\]"):
        load_settings(toml_path=toml, env={})
    toml.write_text("knn_k = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(toml_path=toml, env={})


def test_every_field_is_documented_in_docs_configuration() -> None:
    text = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    for field in dataclasses.fields(Settings):
        row = f"| `{field.name}` | `AUDIT_{field.name.upper()}` | `{field.default}` | {field_docs()[field.name]} |"
        assert row in text, f"docs/configuration.md is out of date for {field.name}"
    documented = sum(line.startswith("| `") for line in text.splitlines())
    assert documented == len(dataclasses.fields(Settings))


def test_true_false_settings_from_toml_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "audit.toml"
    toml.write_text("follow_outside_links = true\n")
    assert load_settings(toml_path=toml, env={}).follow_outside_links is True
    for text, value in [("yes", True), ("ON", True), ("0", False), ("false", False)]:
        env = {"AUDIT_FOLLOW_OUTSIDE_LINKS": text}
        assert load_settings(toml_path=toml, env=env).follow_outside_links is value
    with pytest.raises(ConfigError, match="follow_outside_links='maybe' is not a valid bool"):
        load_settings(toml_path=toml, env={"AUDIT_FOLLOW_OUTSIDE_LINKS": "maybe"})
