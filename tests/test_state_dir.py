"""BOT_STATE_DIR through the real process: one process per folder, private at rest, damaged files at start."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.models import Message
from bot.sandbox.http import Recorded
from bot.stores.journal import dump_message
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.journal import RedisJournal
from bot.stores.sqlite.journal import _SCHEMA, _move_aside
from bot.stream.transport import CHATBOT_TOPIC, message_from_callback
from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox
from tests.redisserver import RedisServer

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1", "BOT_COMMAND_TIMEOUT": "5"}
BUSY = "another bot process is using BOT_STATE_DIR, not starting"


async def test_a_second_process_on_the_same_state_folder_refuses_to_start_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as first:
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


def _title(reply: Recorded) -> str:
    """The card's title, sent to the sessionWebhook or (an expired one) through the robot OpenAPI."""
    body = reply.json()
    return str(json.loads(body["msgParam"])["title"] if "msgParam" in body else card(reply)["title"])


def _entries(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM entries").fetchone()[0])


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("sessionWebhookExpiredTime", "1e30"),
        ("sessionWebhookExpiredTime", "-1e30"),
        ("sessionWebhookExpiredTime", '"123456789012345678901234567890"'),
        ("sessionWebhookExpiredTime", "123456789012345678901234567890"),
        ("sessionWebhookExpiredTime", "1e400"),
        ("sessionWebhookExpiredTime", '"-1e400"'),
        ("createAt", "1e30"),
        ("createAt", "-1e400"),
        ("createAt", '"123456789012345678901234567890"'),
    ],
)
async def test_a_message_with_absurd_numbers_is_journaled_and_answered(tmp_path: Path, field: str, raw: str) -> None:
    async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id, **{field: "@NUMBER@"})
        # written by hand: these numbers as DingTalk's JSON would carry them, which Python's json cannot all write
        text = json.dumps(data, ensure_ascii=False).replace('"@NUMBER@"', raw)
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {"contentType": "application/json", "messageId": "absurd-1", "topic": CHATBOT_TOPIC},
            "data": text,
        }
        await sandbox.push_raw(json.dumps(frame))
        await sandbox.wait_ack("absurd-1")
        await sandbox.wait_reply(data)
        await bot.wait_log("message handled", msg_id=data["msgId"])

        assert [_title(reply) for reply in sandbox.delivered(data)] == ["✅ Unsubscribed"]
        assert not bot.logs("accepting a message failed")
        with sqlite3.connect(tmp_path / "journal.sqlite3") as journal:
            [(done_at,)] = journal.execute("SELECT done_at FROM entries WHERE msg_id = ?", (data["msgId"],))
        assert done_at is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e30, 2**53),
        (-1e30, -(2**53)),
        ("123456789012345678901234567890", 2**53),
        (float("inf"), 0),
        (float("nan"), 0),
        ("1700000000000", 1_700_000_000_000),
        ("1.7e12", 1_700_000_000_000),
        (" 12 ", 12),
        ("9" * 65, 0),
        (True, 0),
        ([1], 0),
        ("soon", 0),
    ],
)
def test_a_numeric_field_is_read_leniently_and_clamped(value: object, expected: int) -> None:
    data = {"msgId": "m1", "msgtype": "text", "text": {"content": "help"}, "sessionWebhookExpiredTime": value}
    assert message_from_callback(data, "fallback").session_webhook_expires_ms == expected


UNREADABLE = "journal unreadable: moved aside, its unfinished commands are not answered; a fresh journal is used"


def _journal_with_unfinished(path: Path, count: int) -> None:
    """A journal as an earlier run left it: `count` unfinished commands, each with a step recorded."""
    with sqlite3.connect(path) as connection:
        for statement in _SCHEMA:
            connection.execute(statement)
        for number in range(count):
            message = Message(f"old-{number}", "help", "text", "1", "cid", "staff", "", "", "corp", "corp", "", 0)
            connection.execute(
                "INSERT INTO entries (msg_id, message) VALUES (?, ?)", (message.msg_id, dump_message(message))
            )
            connection.execute("INSERT INTO progress VALUES (?, 'step', '1')", (message.msg_id,))
        connection.execute("PRAGMA journal_mode = DELETE")


def _damage_table(path: Path, table: str) -> None:
    """Overwrite the first page of one table with garbage, as a torn write or a bad disk sector would."""
    with sqlite3.connect(path) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        [(root,)] = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)


@pytest.mark.parametrize(("damage", "unrecovered"), [("progress", 3), ("whole file", "unknown")])
async def test_an_unreadable_journal_is_moved_aside_counted_and_a_fresh_one_keeps_commands_durable(
    tmp_path: Path, damage: str, unrecovered: object
) -> None:
    journal = tmp_path / "journal.sqlite3"
    _journal_with_unfinished(journal, 3)
    if damage == "whole file":
        journal.write_bytes(b"\x00not a database\x00" * 512)
    else:
        _damage_table(journal, damage)
    damaged = journal.read_bytes()
    async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        _, reply = await converse(sandbox, data)
        await bot.wait_log("message handled", msg_id=data["msgId"])

        assert card(reply)["title"] == "✅ Unsubscribed"
        [line] = bot.logs(UNREADABLE)
        assert line["level"] == "error" and str(line["unrecovered"]).startswith(str(unrecovered))
        [aside] = [entry for entry in tmp_path.glob("journal.sqlite3.unreadable-*") if entry.name.endswith("Z")]
        # kept as found (but SQLite's 100-byte header, where opening it in WAL mode writes two bytes)
        assert line["moved_to"] == str(aside) and aside.read_bytes()[100:] == damaged[100:]
        stamp = aside.name.removeprefix("journal.sqlite3.unreadable-")
        assert abs(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(
            minutes=1
        )
        assert _entries(journal) == 1  # the fresh journal holds the new command
        assert not bot.logs(
            "journal cannot be written: serving without durability (a crash now loses the commands in flight)"
        )


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


def test_a_journal_moved_aside_never_replaces_one_moved_aside_before(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    moved = []
    for content in (b"first damaged file", b"second damaged file"):  # the same second, as in a restart loop
        journal.write_bytes(content)
        aside, count = _move_aside(journal)
        moved.append(aside)
        assert count is None and not journal.exists()
    assert [path.read_bytes() for path in moved] == [b"first damaged file", b"second damaged file"]


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


def _journal_with_odd_entries(path: Path) -> None:
    """Rows SQLite reads back fine but the bot cannot use: a step that is not JSON (a torn page inside a value, or a
    bad sector), and a message whose fields have other types (written by another version)."""
    message = dump_message(Message("odd-1", "help", "text", "1", "cid", "staff", "", "", "corp", "corp", "", 0))
    other_version = {**json.loads(message), "msg_id": "odd-2", "text": 123, "session_webhook_expires_ms": "soon"}
    with sqlite3.connect(path) as connection:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute("INSERT INTO entries (msg_id, message) VALUES ('odd-1', ?)", (message,))
        connection.execute("INSERT INTO progress VALUES ('odd-1', 'step', ?)", (b'{"half',))
        connection.execute("INSERT INTO entries (msg_id, message) VALUES ('odd-2', ?)", (json.dumps(other_version),))


async def test_journal_entries_the_bot_cannot_use_are_dropped_with_a_line_each_and_the_bot_serves(
    tmp_path: Path,
) -> None:
    _journal_with_odd_entries(tmp_path / "journal.sqlite3")
    async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
        user = new_user(sandbox)
        _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id))
        assert card(reply)["title"] == "✅ Unsubscribed"
    assert await bot.wait() == 0

    dropped = bot.logs("journal entry unreadable, dropped")
    assert sorted(line["msg_id"] for line in dropped) == ["odd-1", "odd-2"]
    assert "Traceback" not in bot.output
    with sqlite3.connect(tmp_path / "journal.sqlite3") as journal:  # crossed out: the next start does not fail on them
        assert journal.execute("SELECT count(*) FROM entries WHERE done_at IS NULL").fetchone() == (0,)


async def test_a_redis_journal_entry_whose_step_is_not_json_is_dropped_with_a_line_and_the_dyno_serves(
    redis_server: RedisServer,
) -> None:
    async with started_sandbox() as sandbox:
        batcher = CommandBatcher(connect(redis_server.url, False))
        seeding = RedisJournal(batcher, KeyBuilder(sandbox.client_id), "worker.1", 600, 30)
        await seeding.open()
        message = Message("odd-1", "help", "text", "1", "cid", "staff", "", "", "corp", "corp", "", 0)
        await seeding.add(message)
        await seeding.record("odd-1", "step", 1)
        await seeding.close()
        await batcher.aclose()
        client = redis_server.client()
        [progress] = [key async for key in client.scan_iter(match=f"calbot:{sandbox.client_id}:jprogress:*")]
        await client.hset(progress, "step", '{"half')
        await client.aclose()

        # the entry of a process that is gone is taken over once idle for the claim time
        env = {**ENV, "REDIS_URL": redis_server.url, "DYNO": "worker.1", "BOT_JOURNAL_CLAIM_SECONDS": "0.5"}
        async with running_bot(sandbox, env) as bot:
            user = new_user(sandbox)
            data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
            _, reply = await converse(sandbox, data)
            assert card(reply)["title"] == "✅ Unsubscribed"
            await bot.wait_log("journal entry unreadable, dropped", msg_id="odd-1")
        assert await bot.wait() == 0
    assert "Traceback" not in bot.output


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
