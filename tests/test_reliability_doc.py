"""docs/reliability.md stays true: every test it names exists and is in the reliability group."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(::\w+)?`")


def named_tests() -> list[tuple[str, str | None]]:
    """(file, test or None for the whole file) for each backticked reference, where a bare
    ``::name`` continues the file named last on the same line."""
    found = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        current = None
        for path, name in REFERENCE.findall(line):
            current = path or current
            if current:
                found.append((current, name[2:] if name else None))
    return found


def reliability_tests(path: str) -> set[str]:
    """Test functions of ``path`` marked ``reliability`` (on the function or the module)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    module_marked = any(isinstance(node, ast.Assign) and "pytestmark" in ast.unparse(node.targets[0])
                        and "reliability" in ast.unparse(node.value) for node in tree.body)
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            and (module_marked or any("reliability" in ast.unparse(d) for d in node.decorator_list))}


def test_every_test_the_doc_names_exists_and_is_in_the_group():
    references = named_tests()
    assert len(references) >= 30
    for path, name in references:
        marked = reliability_tests(path)
        assert marked, f"{path} has no test marked reliability"
        assert name is None or name in marked, f"{path}::{name} is missing or not marked"
