"""The journal's and the audit's writes in one batch on one database thread (bot/stores/sqlite/writes.py)."""

from __future__ import annotations

import asyncio
import logging
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


async def test_a_batch_writes_each_share_in_the_order_they_were_made_in_one_call_to_the_thread() -> None:
    thread, written = Counted(), []
    writes = Writes(thread)
    first = writes.share(lambda items: written.append(("first", items)), lambda items, _: [None] * len(items))
    second = writes.share(lambda items: written.append(("second", items)), lambda items, _: [None] * len(items))

    await asyncio.gather(writes.submit(second, 1), writes.submit(first, 2), writes.submit(second, 3))

    assert written == [("first", [2]), ("second", [1, 3])]
    assert thread.calls == 1


async def test_a_share_that_fails_fails_only_its_own_items() -> None:
    writes = Writes(DatabaseThread("sqlite-test"))

    def fail(items: list[int]) -> None:
        raise sqlite3.OperationalError("disk full")

    failing = writes.share(fail, lambda items, outcome: [outcome] * len(items))
    working = writes.share(lambda items: [n * 10 for n in items], lambda items, outcome: outcome)

    results = await asyncio.gather(writes.submit(failing, 1), writes.submit(working, 2), return_exceptions=True)
    assert isinstance(results[0], sqlite3.OperationalError) and results[1] == 20


async def test_an_audit_record_goes_with_the_card_step_after_it_and_lands_first(tmp_path: Path) -> None:
    thread = Counted()
    database = Database(tmp_path / "bot.sqlite3", thread)
    writes = Writes(thread)
    audits = SqliteAudit(database, writes)  # its share first, as build.py makes them
    await audits.create()
    journal = SqliteJournal(tmp_path / "journal.sqlite3", 600, writes)
    await journal.open()
    await journal.add(journaled(1))
    calls = thread.calls

    await audits.record(RECORD)  # nobody waits for it, and it does not go on its own
    await asyncio.sleep(0.05)
    assert thread.calls == calls
    assert await journal.mark_card("msg-1", 1.0)  # the card step takes it along, written after it

    assert thread.calls == calls + 1
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        assert connection.execute("SELECT msg_id FROM audit").fetchall() == [("msg-1",)]
    await journal.close()
    await database.close()


async def test_an_audit_record_is_read_back_at_once_and_written_by_itself_if_nothing_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    audits = SqliteAudit(database)
    await audits.create()
    await audits.record(RECORD)
    assert [record.msg_id for record in await audits.latest("cal-1", 10)] == ["msg-1"]

    monkeypatch.setattr("bot.stores.sqlite.audit.WRITE_WITHIN_SECONDS", 0.05)
    await audits.record(RECORD)
    await asyncio.sleep(0.3)
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        assert connection.execute("SELECT count(*) FROM audit").fetchone() == (2,)
    await database.close()


async def test_a_close_writes_the_audit_records_nobody_waited_for(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    audits = SqliteAudit(database)
    await audits.create()
    await audits.record(RECORD)
    await database.close()
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        assert connection.execute("SELECT count(*) FROM audit").fetchone() == (1,)


async def test_an_audit_record_that_cannot_be_written_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    audits = SqliteAudit(database)  # no table: every insert fails
    with caplog.at_level(logging.ERROR, logger="bot.audit"):
        await audits.record(RECORD)
        await database.close()  # writes it first
    assert [(r.getMessage(), r.fields) for r in caplog.records] == [("audit record not stored", {"msg_id": "msg-1"})]


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
