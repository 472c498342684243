"""User grants: one opaque blob per user (their refresh token, encrypted by the caller); must survive a restart."""

from __future__ import annotations

import sqlite3
import time
from typing import Protocol

from bot.stores.sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_grants (
    user_key TEXT PRIMARY KEY,
    grant_blob BLOB NOT NULL,
    stored_at REAL NOT NULL
)
"""


class UserGrants(Protocol):
    async def get(self, user: str) -> bytes | None:
        """The user's blob as stored, or None."""
        ...

    async def put(self, user: str, blob: bytes) -> None:
        """Keep `blob` for the user, in place of any before it."""
        ...

    async def delete(self, user: str) -> bool:
        """Forget the user's blob; whether there was one."""
        ...


class MemoryGrants:
    """Grants of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._grants: dict[str, bytes] = {}

    async def get(self, user: str) -> bytes | None:
        return self._grants.get(user)

    async def put(self, user: str, blob: bytes) -> None:
        self._grants[user] = bytes(blob)

    async def delete(self, user: str) -> bool:
        return self._grants.pop(user, None) is not None


class SqliteGrants:
    """Grants in the embedded database (BOT_STATE_DIR)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        await self._database.execute(SCHEMA)

    async def get(self, user: str) -> bytes | None:
        rows = await self._database.execute("SELECT grant_blob FROM user_grants WHERE user_key = ?", (user,))
        return bytes(rows[0][0]) if rows else None

    async def put(self, user: str, blob: bytes) -> None:
        await self._database.execute(
            "INSERT INTO user_grants (user_key, grant_blob, stored_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_key) DO UPDATE SET grant_blob = excluded.grant_blob, stored_at = excluded.stored_at",
            (user, bytes(blob), time.time()),
        )

    async def delete(self, user: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            return connection.execute("DELETE FROM user_grants WHERE user_key = ?", (user,)).rowcount > 0

        return await self._database.run(delete)
