"""Suite tickets: the newest ticket DingTalk made for each suite (ISV app), by its event's eventBornTime; it must
survive a restart."""

from __future__ import annotations

import sqlite3
import time
from typing import Protocol

from bot.stores.sqlite.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS suite_tickets (
    suite_key TEXT PRIMARY KEY,
    ticket TEXT NOT NULL,
    stored_at REAL NOT NULL,
    born_ms INTEGER NOT NULL DEFAULT 0
)
"""


class SuiteTickets(Protocol):
    async def latest(self, suite_key: str) -> str | None:
        """The ticket stored last for the suite, or None before any arrived."""
        ...

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        """Keep `ticket` as the suite's latest, unless the one stored was made later (`born_ms`, eventBornTime):
        an older ticket's event pushed late never replaces a newer ticket. Whether it was kept."""
        ...


class MemorySuiteTickets:
    """Tickets of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[int, str]] = {}

    async def latest(self, suite_key: str) -> str | None:
        stored = self._tickets.get(suite_key)
        return stored[1] if stored else None

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        stored = self._tickets.get(suite_key)
        if stored is not None and stored[0] > born_ms:
            return False
        self._tickets[suite_key] = (born_ms, ticket)
        return True


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
