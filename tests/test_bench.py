"""bench/ stands on its own: it imports the bot and its sandbox, never the tests."""

from __future__ import annotations

import ast

from tests.botprocess import ROOT


def _imported(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_no_benchmark_module_imports_the_tests_or_runs_their_files() -> None:
    offending = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        offending += [f"{name} imports {module}" for module in _imported(name) if module.split(".")[0] == "tests"]
        if "tests/" in path.read_text():
            offending.append(f"{name} names a file in tests/")
    assert offending == []
