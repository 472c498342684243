"""BOT_STATE_DIR as processes meet it: one process per folder, private at rest, a damaged database or lock at start."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_process, started_sandbox

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1", "BOT_COMMAND_TIMEOUT": "5"}
BUSY = "another bot process is using BOT_STATE_DIR, not starting"


async def test_a_second_process_on_the_same_state_folder_refuses_to_start_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as first:
        second = await BotProcess({**sandbox.bot_env(), **env}).start()
        assert await second.wait(timeout=20) == 1
        [line] = second.lines  # one line, and it says why
        assert second.logs(BUSY) == [json.loads(line)] and second.stderr == ""
        assert json.loads(line)["state_dir"] == str(tmp_path) and json.loads(line)["level"] == "error"
        assert sandbox.connections == 1

        user = new_user(sandbox)
        _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id))
        assert card(reply)["title"] == "✅ Unsubscribed"
    assert await first.wait() == 0

    async with started_sandbox() as sandbox, running_process(sandbox, env):  # the lock went with the process
        pass


async def test_the_state_folder_is_0700_and_every_file_in_it_0600_whatever_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "left-by-an-older-version").write_text("x")
    os.chmod(folder / "left-by-an-older-version", 0o644)
    previous = os.umask(0o022)
    try:
        async with started_sandbox() as sandbox, running_process(sandbox, {**ENV, "BOT_STATE_DIR": str(folder)}):
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


async def test_a_damaged_bot_sqlite3_is_never_replaced_the_bot_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    database.write_bytes(b"grants and tickets, damaged" * 100)
    async with started_sandbox() as sandbox:
        process = await BotProcess({**sandbox.bot_env(), **ENV, "BOT_STATE_DIR": str(tmp_path)}).start()
        assert await process.wait(timeout=20) == 1

    errors = [json.loads(line) for line in process.lines if json.loads(line)["level"] == "error"]
    assert len(errors) == 1 and errors[0]["problem"].startswith(f"{database} is damaged (DatabaseError")
    assert database.read_bytes() == b"grants and tickets, damaged" * 100
    assert [entry.name for entry in tmp_path.iterdir() if entry.name.startswith("bot.sqlite3")] == ["bot.sqlite3"]
    assert "Traceback" not in process.output


async def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_as_it_was(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "state", tmp_path / "someone-elses-file"
    folder.mkdir()
    elsewhere.write_text("not the bot's: never to be truncated or written\n")
    (folder / "bot.lock").symlink_to(elsewhere)
    async with started_sandbox() as sandbox:
        process = await BotProcess({**sandbox.bot_env(), **ENV, "BOT_STATE_DIR": str(folder)}).start()
        assert await process.wait(timeout=20) == 1
        assert sandbox.connections == 0

    assert elsewhere.read_text() == "not the bot's: never to be truncated or written\n"
    [line] = process.lines
    assert json.loads(line)["level"] == "error" and "bot.lock" in json.loads(line)["problem"]
    assert "Traceback" not in process.output


async def test_a_shared_folder_such_as_tmp_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # what /tmp is: every user writes there
    (shared / "another-users-file").write_text("x")
    os.chmod(shared / "another-users-file", 0o644)
    async with started_sandbox() as sandbox:
        process = await BotProcess({**sandbox.bot_env(), **ENV, "BOT_STATE_DIR": str(shared)}).start()
        assert await process.wait(timeout=20) == 1
        assert sandbox.connections == 0

    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "another-users-file").stat().st_mode) == 0o644
    [line] = process.lines
    assert json.loads(line)["level"] == "error" and "a folder of its own" in json.loads(line)["problem"]
    assert sorted(entry.name for entry in shared.iterdir()) == ["another-users-file"]
