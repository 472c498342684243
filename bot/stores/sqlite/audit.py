"""Audit records in the embedded database (BOT_STATE_DIR), kept first in the journal's file on their way there;
records that arrive while a write is under way are written together in the next transaction."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sqlite3
import time
from typing import Any, Protocol

import orjson

from bot.stores.audit import (
    COLUMNS,
    KEEP_SECONDS,
    MAX_REFUSALS,
    MAX_REFUSED_SUBJECT,
    PRUNE_SECONDS,
    REFUSED,
    AuditRecord,
    Refusal,
    name_key,
)
from bot.stores.batching import Batcher
from bot.stores.sqlite.database import BUSY_TIMEOUT_MS, Database

log = logging.getLogger("bot.audit")

_INSERT = "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# a record an earlier process kept in the journal: it may have reached this table before the process ended
_INSERT_MISSING = (
    "INSERT INTO audit SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
    " (SELECT 1 FROM audit WHERE calendar_id = ? AND at = ? AND msg_id = ? AND action = ?)"
)
_FIELDS = dataclasses.fields(AuditRecord)
MAX_CLOCK_AHEAD_SECONDS = 86_400.0  # a kept record's time may be ahead of this clock by this much (another host's)
STORE_WITHIN_SECONDS = 1.0  # a kept record reaches this database with the next one's write, or this long after
MAX_AGAIN_SECONDS = 60.0  # a record bot.sqlite3 refused is tried again after 1, 2, 4 … and then every 60 seconds


class Keeper(Protocol):
    """Where a record is kept, in order with the journal's steps, until this database has it (the SQLite journal)."""

    def keep(self, record: bytes) -> int: ...

    def stored(self, first: int, last: int) -> None: ...

    async def take_kept(self) -> list[tuple[int, bytes]]: ...

    async def drop_kept(self, through: int) -> None: ...


class SqliteAudit:
    """In the embedded database (BOT_STATE_DIR). A record is kept in the journal first (`keeper`): it lands in order
    with the journal's steps, so before its command's card step, without the command waiting for this database (a
    hand-off to its thread, or a lock another process holds on it); it is written here within STORE_WITHIN_SECONDS,
    together with the others of that second, and a start writes what a kill left kept. Records that arrive while a
    write is under way are written together in the next transaction: under load, one commit for many."""

    def __init__(self, database: Database, keeper: Keeper) -> None:
        self._database = database
        self._keeper = keeper
        self._batches: Batcher[tuple[AuditRecord, int], None] = Batcher(self._write)
        self._pruned_at = 0.0
        self._failing = False  # the last write failed
        self._refused: list[tuple[AuditRecord, int]] = []  # tried again by a timer, ever less often, or at a success
        self._again: asyncio.TimerHandle | None = None
        self._again_in = STORE_WITHIN_SECONDS
        self._closed = False

    async def create(self) -> None:
        """Create the table and its indexes unless they exist."""

        def create(connection: sqlite3.Connection) -> None:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS audit (at REAL, action TEXT, staff_id TEXT, corp_id TEXT, union_id TEXT,"
                " calendar_id TEXT, name TEXT, result TEXT, code TEXT, request_id TEXT, msg_id TEXT, name_key TEXT)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_calendar ON audit (calendar_id, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_name ON audit (name_key, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS audit_refusals (corp_id TEXT, staff_id TEXT, action TEXT, at REAL,"
                " subject TEXT, count INTEGER, PRIMARY KEY (corp_id, staff_id, action)) WITHOUT ROWID"
            )
            connection.execute("DELETE FROM audit WHERE result = ?", (REFUSED,))  # kept apart now

        await self._database.transaction(create)
        await self._store_kept()

    async def _store_kept(self) -> None:
        """Write what an earlier process kept in the journal and may not have written here (killed within its
        second, or this database failed), each record once."""
        try:
            kept = await self._keeper.take_kept()
        except (sqlite3.Error, OSError):  # the journal says so itself as it opens (and sets a damaged file aside)
            return
        if not kept:
            return
        rows = []
        for kept_id, record in kept:
            entry = _kept_record(record)
            if entry is None:  # never stops a start: another version's, or a damaged value
                log.error("kept audit record unreadable, dropped", extra={"fields": {"kept_id": kept_id}})
                continue
            rows.append((*_row(entry), entry.calendar_id, entry.at, entry.msg_id, entry.action))
        await self._database.transaction(lambda connection: connection.executemany(_INSERT_MISSING, rows))
        with contextlib.suppress(sqlite3.Error, OSError):  # left kept: the next start finds them written
            await self._keeper.drop_kept(kept[-1][0])

    async def record(self, entry: AuditRecord) -> None:
        kept = self._keeper.keep(orjson.dumps(COLUMNS(entry)))  # not awaited: see the class
        self._batches.submit_later((entry, kept), STORE_WITHIN_SECONDS)

    async def drained(self, within: float | None = None) -> None:
        """Every record given so far is written, or failed (then tried again, and kept until written); waits at most
        `within` seconds (a lock another process holds can make writes fail for as long as it lasts)."""
        await self._batches.drained(within)

    async def close(self) -> None:
        """Write what is queued, trying for at most the database's lock wait; what is not written stays kept in the
        journal for the next start."""
        self._closed = True  # no more tries: a lock held elsewhere must not hold the stop back
        await self._batches.drained(BUSY_TIMEOUT_MS / 1000)

    async def _write(self, batch: list[tuple[AuditRecord, int]]) -> list[None]:
        if self._closed and self._failing:  # stopping: not another lock wait, the records stay kept
            return [None] * len(batch)
        records = [entry for entry, _ in batch]
        try:
            if len(records) == 1 and time.time() - self._pruned_at <= PRUNE_SECONDS:  # one statement: no BEGIN
                await self._database.apply([(_INSERT, _row(records[0]))])
            else:
                await self._database.transaction(functools.partial(self._insert_rows, records))
        except Exception as error:  # nobody awaits a kept record: said here, tried again, kept until written
            if not self._failing:
                fields = {"count": len(records), "error": type(error).__name__, "kept_for_next_start": True}
                log.error("audit record not stored", extra={"fields": fields})
            self._failing = True
            self._refused += batch
            if self._again is None:
                self._again = asyncio.get_running_loop().call_later(self._again_in, self._try_again)
                # each try holds the database's thread up to its lock wait: a long lock is not tried every second
                self._again_in = min(self._again_in * 2, MAX_AGAIN_SECONDS)
        else:
            if self._failing:
                self._failing, self._again_in = False, STORE_WITHIN_SECONDS
                log.warning("audit records stored again")
            kept = sorted(kept_id for _, kept_id in batch)
            for first, last in _runs(kept):  # not over a refused one's id: it is still only kept
                self._keeper.stored(first, last)
            if self._refused:  # the database takes writes again: what it refused goes now, not at the timer
                self._try_again()
        return [None] * len(batch)

    def _try_again(self) -> None:
        if self._again is not None:
            self._again.cancel()
            self._again = None
        refused, self._refused = self._refused, []
        if not self._closed:
            for item in refused:
                self._batches.submit_later(item, 0.0)

    def _insert_rows(self, batch: list[AuditRecord], connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned_at > PRUNE_SECONDS:
            connection.execute("DELETE FROM audit WHERE at < ?", (now - KEEP_SECONDS,))
            self._pruned_at = now
        connection.executemany(_INSERT, [_row(entry) for entry in batch])

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        await self.drained(STORE_WITHIN_SECONDS)  # this process's records of the last second too, if they can be
        rows = await self._database.execute(
            "SELECT at, action, staff_id, corp_id, union_id, calendar_id, name, result, code, request_id, msg_id"
            " FROM audit WHERE (calendar_id = ? OR (name_key = ? AND name_key != '')) AND at >= ? AND result != ?"
            " AND (? IS NULL OR corp_id = ?) ORDER BY at DESC, rowid DESC LIMIT ?",
            (calendar, name_key(calendar), time.time() - KEEP_SECONDS, REFUSED, corp_id, corp_id, limit),
        )
        return [AuditRecord(*row) for row in reversed(rows)]

    async def refuse(self, refusal: Refusal) -> None:
        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO audit_refusals VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (corp_id, staff_id, action)"
                " DO UPDATE SET at = excluded.at, subject = excluded.subject, count = count + 1",
                (refusal.corp_id, refusal.staff_id, refusal.action, refusal.at, refusal.subject[:MAX_REFUSED_SUBJECT]),
            )
            connection.execute(
                "DELETE FROM audit_refusals WHERE corp_id = ? AND (at < ? OR (staff_id, action) NOT IN"
                " (SELECT staff_id, action FROM audit_refusals WHERE corp_id = ? ORDER BY at DESC LIMIT ?))",
                (refusal.corp_id, time.time() - KEEP_SECONDS, refusal.corp_id, MAX_REFUSALS),
            )

        await self._database.transaction(write)

    async def refusals(self, corp_id: str) -> list[Refusal]:
        rows = await self._database.execute(
            "SELECT at, action, staff_id, corp_id, subject, count FROM audit_refusals WHERE corp_id = ? AND at >= ?"
            " ORDER BY at DESC LIMIT ?",
            (corp_id, time.time() - KEEP_SECONDS, MAX_REFUSALS),
        )
        return [Refusal(*row) for row in reversed(rows)]

    async def forget_organization(self, corp_id: str) -> int:
        return 0  # kept for KEEP_SECONDS, see AuditStore


def _kept_record(record: bytes) -> AuditRecord | None:
    """The record as record() kept it: its time a number, every other field text; None for anything else."""
    try:
        values = orjson.loads(record)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != len(_FIELDS) or type(values[0]) is not float:
        return None
    if not 0 <= values[0] <= time.time() + MAX_CLOCK_AHEAD_SECONDS:  # pruned in time, and shown as a date
        return None
    if not all(isinstance(value, str) for value in values[1:]):
        return None
    return AuditRecord(*values)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as (first, last) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for kept_id in ids:
        if runs and runs[-1][1] + 1 == kept_id:
            runs[-1] = (runs[-1][0], kept_id)
        else:
            runs.append((kept_id, kept_id))
    return runs


def _row(entry: AuditRecord) -> tuple[Any, ...]:
    return (*COLUMNS(entry), name_key(entry.name))
