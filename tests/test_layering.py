"""The layering rules of GUIDE.md section 1, checked by importing each layer in a fresh process
and looking at what it pulled in, plus a scan of the dashboard's source for SQL. What the light
paths import when they run (validating, queueing, the dashboard's pages) is checked by
tests/test_runtime_imports.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

MODEL_LIBRARIES = ("torch", "open_clip", "cleanlab")
# the outer faces of audit/: the command line and the notebook API may import jobs
CLI_MODULES = {"audit.cli", "audit.__main__", "audit.notebook"}


def _modules_of(package: str) -> list[str]:
    root = PROJECT_ROOT / package
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        names.append(".".join(p for p in parts if p != "__init__") or package)
    return names


def _full_names_after(modules: list[str]) -> set[str]:
    """Every module name loaded in a fresh interpreter after importing ``modules``."""
    script = (
        "import sys, json, importlib\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _imported_after(modules: list[str]) -> set[str]:
    """Top-level packages loaded after importing ``modules``."""
    return {name.split(".")[0] for name in _full_names_after(modules)}


def test_audit_never_imports_streamlit_and_only_its_faces_import_jobs() -> None:
    domain = [m for m in _modules_of("audit") if m not in CLI_MODULES]
    loaded = _imported_after(domain)
    assert "streamlit" not in loaded
    assert "jobs" not in loaded
    assert "dashboard" not in loaded


def test_jobs_never_imports_streamlit_or_the_cli() -> None:
    modules = [m for m in _modules_of("jobs") if m != "jobs.__main__"]
    if not modules:
        pytest.skip("jobs/ has no modules yet")
    loaded = _full_names_after(modules)
    assert not {m for m in loaded if m.split(".")[0] == "streamlit"}
    assert not loaded & CLI_MODULES


def _dashboard_sources() -> list[Path]:
    return sorted((PROJECT_ROOT / "dashboard").rglob("*.py"))


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_dashboard_never_loads_model_libraries() -> None:
    sources = _dashboard_sources()
    if not sources:
        pytest.skip("dashboard/ has no modules yet")
    imported = set().union(*(_imports_of(p) for p in sources))
    outside = sorted(m for m in imported if m.split(".")[0] in ("audit", "jobs"))
    direct = {m.split(".")[0] for m in imported}
    assert not direct & set(MODEL_LIBRARIES + ("duckdb",))
    loaded = _imported_after(outside)
    assert not loaded & set(MODEL_LIBRARIES), "a module the dashboard imports pulls in a model library"


def test_dashboard_holds_no_sql() -> None:
    for path in _dashboard_sources():
        text = path.read_text(encoding="utf-8")
        for marker in ("SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", ".execute("):
            assert marker not in text, f"{path.relative_to(PROJECT_ROOT)} holds SQL ({marker!r})"


def test_only_the_store_speaks_sql() -> None:
    for path in sorted(PROJECT_ROOT.glob("[aj]*/**/*.py")):
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if relative.startswith("audit/store/"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "import duckdb" not in text, f"{relative} imports duckdb outside audit/store"
