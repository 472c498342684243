"""bench/ stands on its own: it imports the bot and its sandbox, never the tests; it never waits for ever for a
process that does not stop."""

from __future__ import annotations

import ast
import asyncio
import sys
import time
from types import SimpleNamespace

import pytest

from bench.run import Contender, error_kinds
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


async def test_a_process_that_does_not_stop_on_sigterm_is_killed_and_fails_the_run() -> None:
    ignores_sigterm = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    )
    contender = Contender([sys.executable, "-c", ignores_sigterm], {})
    contender.processes.append(await asyncio.create_subprocess_exec(*contender.command, stdout=asyncio.subprocess.PIPE))
    process = contender.processes[0]
    assert process.stdout is not None and await process.stdout.readline() == b"1\n"  # SIGTERM ignored from here
    started = time.monotonic()

    with pytest.raises(RuntimeError, match="still running 1 s after SIGTERM"):
        await contender.stop(within=1.0)
    assert process.returncode == -9 and time.monotonic() - started < 5


def test_the_errors_of_a_run_say_what_came_instead_of_the_unsubscribed_card() -> None:
    def reply(body: bytes) -> SimpleNamespace:
        return SimpleNamespace(body=body)

    busy = reply(b'{"msgtype": "markdown", "markdown": {"title": "\\u23f3 DingTalk is busy", "text": "..."}}')
    replies = [None, busy, None, busy, reply(b"not json"), None]
    assert error_kinds(replies) == "3 no card, 2 '⏳ DingTalk is busy', 1 a card that is not markdown"
    assert error_kinds([]) == ""
