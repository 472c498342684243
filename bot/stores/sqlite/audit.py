"""Audit records in the embedded database (BOT_STATE_DIR); records that arrive while a write is under way are
written together in the next transaction."""

from __future__ import annotations

import functools
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
from bot.stores.batching import Batcher
from bot.stores.sqlite.database import Database

_INSERT = "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqliteAudit:
    """In the embedded database (BOT_STATE_DIR). Records that arrive while a write is under way are written together
    in the next transaction: under load, one commit for many changes."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._batches: Batcher[AuditRecord, None] = Batcher(self._write)
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
        # awaited: the command's next journal step (its card's) must not land before the record of its change
        await self._batches.submit(entry)

    async def _write(self, batch: list[AuditRecord]) -> list[None]:
        if len(batch) == 1 and time.time() - self._pruned_at <= PRUNE_SECONDS:  # one statement: no BEGIN, COMMIT
            await self._database.apply([(_INSERT, _row(batch[0]))])
        else:
            await self._database.transaction(functools.partial(self._insert_rows, batch))
        return [None] * len(batch)

    def _insert_rows(self, batch: list[AuditRecord], connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned_at > PRUNE_SECONDS:
            connection.execute("DELETE FROM audit WHERE at < ?", (now - KEEP_SECONDS,))
            self._pruned_at = now
        connection.executemany(_INSERT, [_row(entry) for entry in batch])

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
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


def _row(entry: AuditRecord) -> tuple[Any, ...]:
    return (*COLUMNS(entry), name_key(entry.name))
