"""The journal's files as the real bot meets them at start: damaged, moved aside, holding entries it cannot use."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.models import Message
from bot.stores.journal import dump_message
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.journal import RedisJournal
from bot.stores.sqlite.journal import _SCHEMA, SqliteJournal, _move_aside
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox
from tests.redisserver import RedisServer

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1", "BOT_COMMAND_TIMEOUT": "5"}

UNWRITABLE = "journal cannot be written: serving without durability (a crash now loses the commands in flight)"
WRITABLE_AGAIN = "journal writable again: accepted commands survive a crash"
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


def _entries(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM entries").fetchone()[0])


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


@pytest.mark.parametrize(
    ("damage", "unrecovered", "audit_records"),
    [("progress", 3, 0), ("kept", 3, "unknown"), ("whole file", "unknown", "unknown")],
)
async def test_an_unreadable_journal_is_moved_aside_counted_and_a_fresh_one_keeps_commands_durable(
    tmp_path: Path, damage: str, unrecovered: object, audit_records: object
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
        assert str(line["audit_records_not_stored"]).startswith(str(audit_records))
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


def test_a_journal_moved_aside_never_replaces_one_moved_aside_before(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    moved = []
    for content in (b"first damaged file", b"second damaged file"):  # the same second, as in a restart loop
        journal.write_bytes(content)
        aside, unfinished, kept = _move_aside(journal)
        moved.append(aside)
        assert unfinished is None and kept is None and not journal.exists()
    assert [path.read_bytes() for path in moved] == [b"first damaged file", b"second damaged file"]


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


async def test_a_full_journal_says_so_once_and_writable_again_only_once_an_entry_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3", remember_seconds=600)
    await journal.open()
    # the disk full, as SQLite meets it: the file cannot grow by one more page
    await _file_can_grow_to(journal, pages=1)
    number = 0
    with caplog.at_level(logging.INFO, logger="bot.journal"):
        while not caplog.records:  # the entries that still fit in the pages the file has
            number += 1
            await journal.add(_message(f"m-{number}"))
        for later in range(number + 1, number + 6):  # each accepted, crossed out without ever having been written
            assert await journal.add(_message(f"m-{later}")) is True
            await journal.record(f"m-{later}", "card", True)
            await journal.finish(f"m-{later}")
        full = [record.getMessage() for record in caplog.records]
        caplog.clear()
        await _file_can_grow_to(journal, pages=1000)
        await journal.add(_message("m-after"))
        freed = [record.getMessage() for record in caplog.records]
    await journal.close()

    assert full == [UNWRITABLE]  # not "writable again" after each finish that had nothing to change
    assert freed == [WRITABLE_AGAIN]


async def _file_can_grow_to(journal: SqliteJournal, pages: int) -> None:
    """The disk full (or freed again) as SQLite meets it, for both of the journal's connections (the thread's and
    the loop's for quick writes): max_page_count is a connection's own."""
    database = journal._database
    await database.run(lambda connection: connection.execute(f"PRAGMA max_page_count = {pages}"))
    assert database._quick is not None  # made by the first call on the thread (the journal's open)
    database._quick.execute(f"PRAGMA max_page_count = {pages}")


def _message(msg_id: str) -> Message:
    return Message(msg_id, "x" * 500, "text", "1", "cid", "staff", "", "", "corp", "corp", "", 0)


async def test_the_minutes_purge_is_written_on_the_database_thread_and_the_next_step_on_the_loop(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3", remember_seconds=600)
    await journal.open()
    database = journal._database
    on_thread: list[str] = []
    await database.run(lambda connection: connection.set_trace_callback(on_thread.append))
    assert database._quick is not None
    on_loop: list[str] = []
    database._quick.set_trace_callback(on_loop.append)

    await journal.add(_message("m-1"))  # the first batch purges (then once a minute): on the thread, the add with it
    await journal.record("m-1", "changing", True)

    assert any(sql.startswith("DELETE FROM entries") for sql in on_thread)
    assert not any(sql.startswith("DELETE") for sql in on_loop)
    assert any(sql.startswith("INSERT INTO entries") for sql in on_thread)
    assert [sql for sql in on_loop if sql.startswith("INSERT")] == [
        "INSERT OR REPLACE INTO progress (msg_id, key, value) VALUES ('m-1', 'changing', x'74727565')"
    ]
    await journal.close()
