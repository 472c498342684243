"""User grants in the embedded database (BOT_STATE_DIR): one sealed blob per user, surviving a restart."""

from __future__ import annotations

import sqlite3
import time

from bot.stores.keys import of_organization, pending_connect
from bot.stores.sqlite.database import Database, glob_prefix

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_grants (
    user_key TEXT PRIMARY KEY,
    grant_blob BLOB NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL
)
"""
_PURGE = "DELETE FROM user_grants WHERE expires_at < ?"


class SqliteGrants:
    """Grants in the embedded database (BOT_STATE_DIR)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        def create(connection: sqlite3.Connection) -> None:
            connection.execute(SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(user_grants)")}
            if "expires_at" not in columns:  # a file from a version whose pending connects never expired
                connection.execute("ALTER TABLE user_grants ADD COLUMN expires_at REAL")
            connection.execute(_PURGE, (time.time(),))

        await self._database.run(create)

    async def get(self, user: str) -> bytes | None:
        rows = await self._database.execute(
            "SELECT grant_blob FROM user_grants WHERE user_key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (user, time.time()),
        )
        return bytes(rows[0][0]) if rows else None

    async def put(self, user: str, blob: bytes, expires_in: float | None = None) -> None:
        now = time.time()
        expires_at = None if expires_in is None else now + expires_in

        def put(connection: sqlite3.Connection) -> None:
            connection.execute(_PURGE, (now,))  # puts are rare (a connect, a token refresh): the purge rides along
            connection.execute(
                "INSERT INTO user_grants (user_key, grant_blob, stored_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_key) DO UPDATE SET grant_blob = excluded.grant_blob, "
                "stored_at = excluded.stored_at, expires_at = excluded.expires_at",
                (user, bytes(blob), now, expires_at),
            )

        await self._database.transaction(put)

    async def delete(self, user: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            return connection.execute("DELETE FROM user_grants WHERE user_key = ?", (user,)).rowcount > 0

        return await self._database.run(delete)

    async def forget_organization(self, corp_id: str) -> int:
        """Its users' grants and their pending connects."""
        tenants = glob_prefix(of_organization(corp_id))
        return await self._database.delete_rows(
            "DELETE FROM user_grants WHERE user_key GLOB ? OR user_key GLOB ?",
            (tenants, glob_prefix(pending_connect(of_organization(corp_id)))),
        )
