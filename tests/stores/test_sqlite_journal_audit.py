"""The journal's and the audit's SQLite writes: the journal apart from the bot's database, an audit record kept in the
journal until the bot's database has it, an audit failure told."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from bot.stores.audit import COLUMNS, AuditRecord
from bot.stores.sqlite.audit import STORE_WITHIN_SECONDS, SqliteAudit, _runs
from bot.stores.sqlite.database import BUSY_TIMEOUT_MS, Database
from bot.stores.sqlite.journal import SqliteJournal
from tests.helpers_journal import journaled, kept_audit_rows

RECORD = AuditRecord(
    time.time(), "unsubscribe", "staff1", "corp", "u1", "cal-1", "Team", "unsubscribed", "", "R", "msg-1"
)


async def test_the_journal_never_waits_for_a_lock_on_the_bots_database(tmp_path: Path) -> None:
    database, audits, journal = await opened(tmp_path)
    locker = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing: the audit's insert waits for it
    try:
        await audits.record(RECORD)
        writing = asyncio.ensure_future(audits.drained())
        await asyncio.sleep(0.05)
        assert await asyncio.wait_for(journal.add(journaled(1)), 1.0)  # the ACK's write, not behind the audit's
        assert not writing.done()
    finally:
        locker.execute("COMMIT")
        locker.close()
    await writing
    await journal.close()
    await database.close()


def bot_database_rows(state: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(state / "bot.sqlite3") as db:
        return db.execute("SELECT msg_id, calendar_id FROM audit ORDER BY at").fetchall()


async def opened(state: Path) -> tuple[Database, SqliteAudit, SqliteJournal]:
    """The bot's database and the journal as the bot opens them: the audit's table (and what the journal kept written
    into it), then the journal."""
    database = await Database(state / "bot.sqlite3").open()
    journal = SqliteJournal(state / "journal.sqlite3", 600)
    audits = SqliteAudit(database, journal)
    await audits.create()
    await journal.open()
    return database, audits, journal


async def test_a_record_lands_in_the_journal_before_the_commands_next_step_while_the_bots_database_is_locked(
    tmp_path: Path,
) -> None:
    database, audits, journal = await opened(tmp_path)
    locker = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing bot.sqlite3 (an operator's shell, a backup)
    try:
        await asyncio.wait_for(audits.record(RECORD), 0.5)  # the command does not wait for bot.sqlite3
        await asyncio.wait_for(journal.mark_card("msg-1", 1.0), 1.0)  # its card step: the record has landed too
        assert kept_audit_rows(tmp_path) == [("unsubscribe", "cal-1", "unsubscribed")]
        assert bot_database_rows(tmp_path) == []
    finally:
        locker.execute("COMMIT")
        locker.close()
    await audits.drained()
    assert bot_database_rows(tmp_path) == [("msg-1", "cal-1")]
    await eventually(lambda: kept_audit_rows(tmp_path) == [])  # dropped within a second, with no other write
    await journal.close()
    await database.close()


async def test_a_start_writes_what_the_journal_kept_into_the_bots_database_once(tmp_path: Path) -> None:
    database, _, journal = await opened(tmp_path)
    second = dataclasses.replace(RECORD, at=RECORD.at + 1, calendar_id="cal-2", msg_id="msg-2")
    for record in (RECORD, second):
        journal.keep(orjson.dumps(COLUMNS(record)))
    await journal.close()  # kept, and never handed over: a kill
    await database.close()
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:  # the first had reached bot.sqlite3 before the kill
        db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*COLUMNS(RECORD), "team"))
    assert len(kept_audit_rows(tmp_path)) == 2

    database, _, journal = await opened(tmp_path)
    assert bot_database_rows(tmp_path) == [("msg-1", "cal-1"), ("msg-2", "cal-2")]
    assert kept_audit_rows(tmp_path) == []
    await journal.close()
    await database.close()


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def rename_audit_table(state: Path, old: str, new: str) -> None:
    """Another process takes the audit table away (every insert fails) or puts it back."""
    with contextlib.closing(sqlite3.connect(state / "bot.sqlite3")) as db:
        db.execute(f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_record_the_bots_database_refuses_is_told_kept_and_written_once_it_can_be(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database, audits, journal = await opened(tmp_path)
    second = dataclasses.replace(RECORD, at=RECORD.at + 1, calendar_id="cal-2", msg_id="msg-2")
    rename_audit_table(tmp_path, "audit", "audit_away")
    await audits.record(RECORD)  # the command goes on
    await audits.drained()
    assert "audit record not stored" in caplog.text
    await journal.record("msg-3", "changing", ["cal-3", "", None])
    assert kept_audit_rows(tmp_path) == [("unsubscribe", "cal-1", "unsubscribed")]
    rename_audit_table(tmp_path, "audit_away", "audit")
    await eventually(lambda: bot_database_rows(tmp_path) == [("msg-1", "cal-1")])  # tried again after a second
    assert "audit records stored again" in caplog.text
    await audits.record(second)
    await eventually(lambda: kept_audit_rows(tmp_path) == [])
    await stop(audits, journal, database)


async def test_a_refused_record_goes_with_the_next_write_the_database_takes_not_at_its_timer(tmp_path: Path) -> None:
    database, audits, journal = await opened(tmp_path)
    rename_audit_table(tmp_path, "audit", "audit_away")
    await audits.record(RECORD)
    await audits.drained()  # refused: tried again in a second
    refused_at = time.monotonic()
    rename_audit_table(tmp_path, "audit_away", "audit")
    await audits.record(dataclasses.replace(RECORD, at=RECORD.at + 1, calendar_id="cal-2", msg_id="msg-2"))
    await audits.drained()  # taken: the refused one goes at once
    await audits.drained()
    assert bot_database_rows(tmp_path) == [("msg-1", "cal-1"), ("msg-2", "cal-2")]
    assert time.monotonic() - refused_at < STORE_WITHIN_SECONDS
    await stop(audits, journal, database)


async def test_a_record_still_refused_at_the_stop_is_written_by_the_next_start(tmp_path: Path) -> None:
    database, audits, journal = await opened(tmp_path)
    second = dataclasses.replace(RECORD, at=RECORD.at + 1, calendar_id="cal-2", msg_id="msg-2")
    await audits.record(RECORD)
    await audits.drained()
    rename_audit_table(tmp_path, "audit", "audit_away")
    await audits.record(second)
    await audits.close()
    await journal.close()  # drops the first (written), keeps the second
    await database.close()
    assert kept_audit_rows(tmp_path) == [("unsubscribe", "cal-2", "unsubscribed")]
    rename_audit_table(tmp_path, "audit_away", "audit")

    database, _, journal = await opened(tmp_path)
    assert bot_database_rows(tmp_path) == [("msg-1", "cal-1"), ("msg-2", "cal-2")]
    assert kept_audit_rows(tmp_path) == []
    await journal.close()
    await database.close()


@pytest.mark.parametrize(
    "record",
    [
        b"[]",
        b"not json",
        b'{"at": 1}',
        orjson.dumps([1.0, "a", 2, *["s"] * 8]),
        orjson.dumps([[]] * 11),
        *(orjson.dumps([at, *["s"] * 10]) for at in (True, 2**62, 1e300, -1.0)),  # never pruned, or no date
    ],
)
async def test_a_kept_record_of_another_shape_is_dropped_with_a_line_and_the_start_goes_on(
    tmp_path: Path, record: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    database, _, journal = await opened(tmp_path)
    journal.keep(record)
    journal.keep(orjson.dumps(COLUMNS(RECORD)))
    await journal.close()
    await database.close()

    database, _, journal = await opened(tmp_path)
    assert "kept audit record unreadable, dropped" in caplog.text
    assert bot_database_rows(tmp_path) == [("msg-1", "cal-1")]
    assert kept_audit_rows(tmp_path) == []
    await journal.close()
    await database.close()


def test_kept_ids_are_told_stored_in_runs_that_never_span_one_not_written() -> None:
    assert _runs([1, 2, 3, 5, 7, 8]) == [(1, 3), (5, 5), (7, 8)]
    assert _runs([]) == []


async def test_a_lock_held_elsewhere_holds_the_stop_back_no_longer_than_one_lock_wait(tmp_path: Path) -> None:
    database, audits, journal = await opened(tmp_path)
    locker = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # held for as long as the stop takes
    try:
        await audits.record(RECORD)
        await audits.drained(1.0)  # its write waits for the lock
        # queued behind it: whenever a write fails and is tried again, the writer has the other one to write
        await audits.record(dataclasses.replace(RECORD, at=RECORD.at + 1, calendar_id="cal-2", msg_id="msg-2"))
        await asyncio.wait_for(stop(audits, journal, database), BUSY_TIMEOUT_MS / 1000 + 2.0)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert len(kept_audit_rows(tmp_path)) == 2  # for the next start


async def stop(audits: SqliteAudit, journal: SqliteJournal, database: Database) -> None:
    """As the bot stops: the audit's writes, then the journal, then the bot's database."""
    await audits.close()
    await journal.close()
    await database.close()
