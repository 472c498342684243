"""Suite tickets: the latest ticket DingTalk pushed for each suite (ISV app); it must survive a restart."""

from __future__ import annotations

import time
from typing import Protocol

from bot.stores.sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS suite_tickets (
    suite_key TEXT PRIMARY KEY,
    ticket TEXT NOT NULL,
    stored_at REAL NOT NULL
)
"""


class SuiteTickets(Protocol):
    async def latest(self, suite_key: str) -> str | None:
        """The ticket stored last for the suite, or None before any arrived."""
        ...

    async def store(self, suite_key: str, ticket: str) -> None:
        """Keep `ticket` as the suite's latest, in place of any before it."""
        ...


class MemorySuiteTickets:
    """Tickets of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._tickets: dict[str, str] = {}

    async def latest(self, suite_key: str) -> str | None:
        return self._tickets.get(suite_key)

    async def store(self, suite_key: str, ticket: str) -> None:
        self._tickets[suite_key] = ticket


class SqliteSuiteTickets:
    """Tickets in the embedded database (BOT_STATE_DIR): they survive a restart of a process with its own disk."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        await self._database.execute(SCHEMA)

    async def latest(self, suite_key: str) -> str | None:
        rows = await self._database.execute("SELECT ticket FROM suite_tickets WHERE suite_key = ?", (suite_key,))
        return str(rows[0][0]) if rows else None

    async def store(self, suite_key: str, ticket: str) -> None:
        await self._database.execute(
            "INSERT INTO suite_tickets (suite_key, ticket, stored_at) VALUES (?, ?, ?) "
            "ON CONFLICT (suite_key) DO UPDATE SET ticket = excluded.ticket, stored_at = excluded.stored_at",
            (suite_key, ticket, time.time()),
        )
