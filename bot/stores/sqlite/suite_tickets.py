"""Suite tickets in the embedded database (BOT_STATE_DIR): the latest per suite, surviving a restart."""

from __future__ import annotations

import sqlite3
import time

from bot.stores.sqlite.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS suite_tickets (
    suite_key TEXT PRIMARY KEY,
    ticket TEXT NOT NULL,
    stored_at REAL NOT NULL,
    born_ms INTEGER NOT NULL DEFAULT 0
)
"""


class SqliteSuiteTickets:
    """Tickets in the embedded database (BOT_STATE_DIR): they survive a restart of a process with its own disk."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        def create(connection: sqlite3.Connection) -> None:
            connection.execute(SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(suite_tickets)")}
            if "born_ms" not in columns:  # a database of an earlier version
                connection.execute("ALTER TABLE suite_tickets ADD COLUMN born_ms INTEGER NOT NULL DEFAULT 0")

        await self._database.transaction(create)

    async def latest(self, suite_key: str) -> str | None:
        rows = await self._database.execute("SELECT ticket FROM suite_tickets WHERE suite_key = ?", (suite_key,))
        return str(rows[0][0]) if rows else None

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        def store(connection: sqlite3.Connection) -> bool:
            written = connection.execute(
                "INSERT INTO suite_tickets (suite_key, ticket, stored_at, born_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (suite_key) DO UPDATE SET ticket = excluded.ticket, stored_at = excluded.stored_at, "
                "born_ms = excluded.born_ms WHERE excluded.born_ms >= suite_tickets.born_ms",
                (suite_key, ticket, time.time(), born_ms),
            )
            return written.rowcount > 0

        return await self._database.transaction(store)

    async def forget_organization(self, corp_id: str) -> int:
        return 0  # the suite's, not any organization's
