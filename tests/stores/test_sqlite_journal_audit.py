"""The journal's and the audit's SQLite writes: the journal apart from the bot's database, an audit failure told."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bot.stores.audit import AuditRecord
from bot.stores.sqlite.audit import SqliteAudit
from bot.stores.sqlite.database import Database
from bot.stores.sqlite.journal import SqliteJournal
from tests.helpers_journal import journaled

RECORD = AuditRecord(
    time.time(), "unsubscribe", "staff1", "corp", "u1", "cal-1", "Team", "unsubscribed", "", "R", "msg-1"
)


async def test_the_journal_never_waits_for_a_lock_on_the_bots_database(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    audits = SqliteAudit(database)
    await audits.create()
    journal = SqliteJournal(tmp_path / "journal.sqlite3", 600)
    await journal.open()
    locker = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing: the audit's insert waits for it
    try:
        waiting = asyncio.ensure_future(audits.record(RECORD))
        await asyncio.sleep(0.05)
        assert await asyncio.wait_for(journal.add(journaled(1)), 1.0)  # the ACK's write, not behind the audit's
        assert not waiting.done()
    finally:
        locker.execute("COMMIT")
        locker.close()
    await waiting
    await journal.close()
    await database.close()


async def test_an_audit_record_that_cannot_be_written_fails_its_command_s_call(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    audits = SqliteAudit(database)  # no table: every insert fails
    with pytest.raises(sqlite3.OperationalError):
        await audits.record(RECORD)
    await database.close()
