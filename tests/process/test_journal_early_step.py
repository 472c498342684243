"""`unsubscribe "<id>"` through the real `python -m bot`: its change's step is written while the sender is looked up,
and a kill or a failed lookup meanwhile still ends in one card and at most one calendar call."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from bot.sandbox.platform import Sandbox
from tests.helpers import (
    User,
    answered_after,
    calendar_calls,
    new_calendar,
    new_user,
    running_process,
    started_sandbox,
    unsubscribe_calls,
)
from tests.helpers_journal import ENV, UNSUBSCRIBED, audit_rows
from tests.process.test_journal import kill, titles, until
from tests.process.test_journal_audit_crashes import unfinished

LOOKUP_SECONDS = 1.5  # the user lookup's delay; the step is looked for in the first half of it
NO_PERMISSION = {"errcode": 60011, "errmsg": "no permission"}


def changing_steps(state: Path) -> list[Any]:
    """The `changing` steps the journal holds, read as another process would."""
    with contextlib.closing(sqlite3.connect(state / "journal.sqlite3")) as connection:
        rows = connection.execute("SELECT value FROM progress WHERE key = 'changing'").fetchall()
    return [json.loads(value) for (value,) in rows]


async def step_written_during_lookup(sandbox: Sandbox, state: Path, staff_id: str) -> list[Any]:
    """The `changing` steps, once the journal holds one while the sender's lookup is still unanswered."""
    await sandbox.wait_for(lambda: any(r.json() == {"userid": staff_id} for r in sandbox.calls("user/get")))
    await until(lambda: changing_steps(state), timeout=LOOKUP_SECONDS / 2)
    return changing_steps(state)


def quoted_unsubscribe_slowly_looked_up(sandbox: Sandbox) -> tuple[User, str, dict[str, Any]]:
    """A new sender, a calendar they follow, and their `unsubscribe "<id>"`, with every user lookup delayed."""
    sandbox.api_latency = {"user/get": LOOKUP_SECONDS}
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    return user, calendar_id, sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id)


async def test_the_change_step_of_a_quoted_id_is_written_while_the_sender_is_looked_up(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user, calendar_id, data = quoted_unsubscribe_slowly_looked_up(sandbox)
        async with running_process(sandbox, env):
            await sandbox.wait_ack(await sandbox.push(data))
            assert await step_written_during_lookup(sandbox, tmp_path, user.staff_id) == [[calendar_id, "", None]]
            assert not sandbox.calls("unsubscribe")
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await answered_after(sandbox, user.staff_id)
        assert titles(sandbox, data) == [UNSUBSCRIBED]
        # one call, no listing: this handling's own step is never read as one an interrupted handling left
        assert [r.api for r in calendar_calls(sandbox, user.union_id)] == ["unsubscribe"]
        assert not sandbox.subscriptions[user.union_id]


async def test_a_kill_during_the_lookup_after_the_step_lists_then_unsubscribes_once(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user, calendar_id, data = quoted_unsubscribe_slowly_looked_up(sandbox)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            assert await step_written_during_lookup(sandbox, tmp_path, user.staff_id) == [[calendar_id, "", None]]
            await kill(sandbox, first)
        assert not sandbox.calls("unsubscribe")
        sandbox.api_latency = {}
        before = len(sandbox.requests)

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("message handled", msg_id=data["msgId"])
            await answered_after(sandbox, user.staff_id)

        # the step says the change may have begun: the resume looks first, finds the calendar followed, asks once
        calendar_calls_after = [r.api for r in sandbox.requests[before:] if r.path.startswith("/v1.0/calendar/")]
        assert calendar_calls_after == ["calendars", "unsubscribe"]
        assert titles(sandbox, data) == [UNSUBSCRIBED]
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
        assert not sandbox.subscriptions[user.union_id]
        assert audit_rows(tmp_path, data["msgId"]) == [("unsubscribe", calendar_id, "unsubscribed")]
        await until(lambda: unfinished(tmp_path) == [], timeout=5)


async def test_a_failed_lookup_after_the_step_was_written_answers_its_card_and_changes_nothing(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        sandbox.fail_next("user/get", 200, NO_PERMISSION)
        user, calendar_id, data = quoted_unsubscribe_slowly_looked_up(sandbox)
        async with running_process(sandbox, env) as process:
            await sandbox.wait_ack(await sandbox.push(data))
            assert await step_written_during_lookup(sandbox, tmp_path, user.staff_id) == [[calendar_id, "", None]]
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await process.wait_log("message handled", msg_id=data["msgId"])
            await until(lambda: unfinished(tmp_path) == [], timeout=5)  # its finish goes within a second
        assert titles(sandbox, data) == ["🔒 The bot lacks a permission"]
        assert not sandbox.calls("unsubscribe")
        assert sandbox.subscriptions[user.union_id] == {calendar_id}
        assert "Traceback" not in process.output and "never retrieved" not in process.output
