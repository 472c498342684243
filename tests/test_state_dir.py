"""BOT_STATE_DIR through the real process: one process per folder, private at rest, damaged files at start."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1", "BOT_COMMAND_TIMEOUT": "5"}
BUSY = "another bot process is using BOT_STATE_DIR, not starting"


async def test_a_second_process_on_the_same_state_folder_refuses_to_start_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as first:
        second = await BotProcess({**sandbox.bot_env(), **env}).start()
        assert await second.wait(timeout=20) == 1
        [line] = second.lines
        assert second.logs(BUSY)[0]["state_dir"] == str(tmp_path) and second.stderr == ""
        assert sandbox.connections == 1

        user = new_user(sandbox)
        _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id))
        assert card(reply)["title"] == "✅ Unsubscribed"
    assert await first.wait() == 0

    async with started_sandbox() as sandbox, running_bot(sandbox, env):  # the lock went with the process
        pass


async def test_the_state_folder_is_0700_and_every_file_in_it_0600_whatever_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "left-by-an-older-version").write_text("x")
    os.chmod(folder / "left-by-an-older-version", 0o644)
    previous = os.umask(0o022)
    try:
        async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(folder)}):
            user = new_user(sandbox)
            data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
            await converse(sandbox, data)
            names = {entry.name for entry in folder.iterdir()}
            assert {"journal.sqlite3-wal", "journal.sqlite3-shm", "bot.sqlite3", "bot.lock"} <= names
            modes = {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in folder.iterdir()}
    finally:
        os.umask(previous)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert modes == dict.fromkeys(modes, 0o600)


def _entries(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM entries").fetchone()[0])
