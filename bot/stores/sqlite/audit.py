"""Audit records in the embedded database (BOT_STATE_DIR); records that arrive while a write is under way are
written together in the next transaction."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from typing import Any

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
from bot.stores.sqlite.database import Database
from bot.stores.sqlite.writes import Writes

log = logging.getLogger("bot.audit")
_INSERT = "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
WRITE_WITHIN_SECONDS = 1.0  # a record written at the latest this long after it was made, if no other write comes


class SqliteAudit:
    """In the embedded database (BOT_STATE_DIR). Records that arrive while a write is under way are written together
    in the next transaction: under load, one commit for many changes."""

    def __init__(self, database: Database, writes: Writes | None = None) -> None:
        self._database = database
        # shared with the journal (build.py), its share made first: written before the card step of the same command
        self._writes = writes if writes is not None else Writes(database.thread)
        self._share = self._writes.share(self._insert, self._settle)
        database.before_close(self._writes.drained)  # the records nobody waited for are written before it closes
        self._last: asyncio.Future[Any] | None = None  # the newest record's write: reads wait for it
        self._pruned_at = 0.0

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

    async def record(self, entry: AuditRecord) -> None:
        # not waited for (a failure is logged here), and no write of its own: it goes with the journal's next write,
        # the card step of the same command (made right after the card is rendered), which cannot land before it;
        # so a card out (and a command a restart does not run again) implies its record
        written = self._writes.submit_later(self._share, entry, WRITE_WITHIN_SECONDS)
        written.add_done_callback(functools.partial(_said_if_failed, entry.msg_id))
        self._last = written

    def _insert(self, batch: list[AuditRecord]) -> None:
        if len(batch) == 1 and time.time() - self._pruned_at <= PRUNE_SECONDS:  # one statement: no BEGIN, COMMIT
            self._database.apply([(_INSERT, _row(batch[0]))])
        else:
            self._database.transact(functools.partial(self._insert_rows, batch))

    @staticmethod
    def _settle(batch: list[AuditRecord], outcome: Any) -> list[Any]:
        return [outcome if isinstance(outcome, BaseException) else None] * len(batch)

    async def _recorded(self) -> None:
        """Every record made so far is written (or failed): batches are written in order."""
        if self._last is not None and not self._last.done():
            self._writes.flush()
            await asyncio.wait([self._last])

    def _insert_rows(self, batch: list[AuditRecord], connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned_at > PRUNE_SECONDS:
            connection.execute("DELETE FROM audit WHERE at < ?", (now - KEEP_SECONDS,))
            self._pruned_at = now
        connection.executemany(_INSERT, [_row(entry) for entry in batch])

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        await self._recorded()
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


def _said_if_failed(msg_id: str, written: asyncio.Future[Any]) -> None:
    if not written.cancelled() and (error := written.exception()) is not None:
        # the change is made and logged (its "calendar change" line); a store that fails must not hide its card
        log.error("audit record not stored", exc_info=error, extra={"fields": {"msg_id": msg_id}})


def _row(entry: AuditRecord) -> tuple[Any, ...]:
    return (*COLUMNS(entry), name_key(entry.name))
