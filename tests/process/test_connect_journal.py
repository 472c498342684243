"""The command that waited for a user's consent is journaled like any other: through the real process, killed."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from bot.auth.connect import CONNECT_SECONDS
from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import new_calendar, new_user, running_process, started_sandbox
from tests.helpers_journal import Held
from tests.helpers_oauth import browse, connect_link, consent, private_cards, subscribed, user_env
from tests.redisserver import free_port


async def kill(sandbox: Sandbox, process: BotProcess) -> None:
    process.signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    await sandbox.wait_for(lambda: sandbox.connections == 0)


def connect_progress(journal: Path) -> list[str]:
    with sqlite3.connect(journal) as connection:
        return [row[0] for row in connection.execute("SELECT msg_id FROM progress WHERE msg_id LIKE 'connect-%'")]


async def test_killed_right_after_the_callback_page_the_waiting_command_is_answered_after_the_restart(
    tmp_path: Path,
) -> None:
    async with started_sandbox() as sandbox:
        env = user_env(sandbox, tmp_path, free_port())
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user)
        held = Held()  # the waiting command's first call never gets its answer before the kill
        async with running_process(sandbox, env) as first:
            await first.wait_log("serving the OAuth redirect")
            link = await connect_link(sandbox, user, f"unsubscribe {calendar_id}")
            with sqlite3.connect(tmp_path / "bot.sqlite3") as database:
                [(lifetime,)] = database.execute(
                    "SELECT expires_at - stored_at FROM user_grants WHERE user_key LIKE 'pending:%'"
                )
            assert lifetime == pytest.approx(CONNECT_SECONDS)  # the waiting command expires with its link's state
            sandbox.answer_next("calendars", held)
            page = await browse(await consent(sandbox, link, user))
            assert page.status_code == 200
            await kill(sandbox, first)
        held.released.set()
        assert private_cards(sandbox, user) == [] and subscribed(sandbox, user, calendar_id)

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: private_cards(sandbox, user))
            [resumed] = second.logs("resuming unfinished commands")
            assert resumed["count"] == 1
        assert [card["title"] for card in private_cards(sandbox, user)] == ["✅ Unsubscribed"]
        assert not subscribed(sandbox, user, calendar_id)

        # finished connect-* progress goes with the periodic purge (the first write of a run), like any other
        journal = tmp_path / "journal.sqlite3"
        assert connect_progress(journal)
        async with running_process(sandbox, env) as third:
            data = sandbox.chat("help", user.staff_id)
            await sandbox.push(data)
            await third.wait_log("message handled", msg_id=data["msgId"])
        assert connect_progress(journal) == []
