"""A store's writes batched onto its database thread (bot/stores/sqlite/writes.py); the journal's apart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bot.stores.audit import AuditRecord
from bot.stores.sqlite.audit import SqliteAudit
from bot.stores.sqlite.database import Database, DatabaseThread
from bot.stores.sqlite.journal import SqliteJournal
from bot.stores.sqlite.writes import Writes
from tests.helpers_journal import journaled

RECORD = AuditRecord(
    time.time(), "unsubscribe", "staff1", "corp", "u1", "cal-1", "Team", "unsubscribed", "", "R", "msg-1"
)


class Counted(DatabaseThread):
    """A database thread that counts the calls handed to it."""

    def __init__(self) -> None:
        super().__init__("sqlite-test")
        self.calls = 0

    async def run(self, work: Any) -> Any:
        self.calls += 1
        return await super().run(work)


async def test_a_batch_is_one_call_to_the_thread_its_items_in_the_order_they_were_made() -> None:
    thread, written = Counted(), []
    writes: Writes[int] = Writes(thread, written.append, lambda items, _: [None] * len(items))

    await asyncio.gather(writes.submit(1), writes.submit(2), writes.submit(3))

    assert written == [[1, 2, 3]]
    assert thread.calls == 1


async def test_a_batch_that_fails_fails_each_of_its_items() -> None:
    def fail(items: list[int]) -> None:
        raise sqlite3.OperationalError("disk full")

    writes: Writes[int] = Writes(DatabaseThread("sqlite-test"), fail, lambda items, outcome: [outcome] * len(items))

    results = await asyncio.gather(writes.submit(1), writes.submit(2), return_exceptions=True)
    assert all(isinstance(result, sqlite3.OperationalError) for result in results)


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


async def test_two_databases_share_one_thread_that_stops_when_the_last_closes(tmp_path: Path) -> None:
    thread = DatabaseThread("sqlite-shared")
    first = await Database(tmp_path / "a.sqlite3", thread).open()
    second = await Database(tmp_path / "b.sqlite3", thread).open()
    idents = {await first.run(lambda _: threading.get_ident()), await second.run(lambda _: threading.get_ident())}
    assert len(idents) == 1

    await first.close()
    assert await second.execute("SELECT 1") == [(1,)]
    await second.close()
    assert not any(t.name == "sqlite-shared" for t in threading.enumerate())
