"""Pending bulk actions in the embedded database (BOT_STATE_DIR): they survive a restart of the one dyno."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson

from bot.stores.keys import of_organization
from bot.stores.sqlite.database import Database, glob_prefix


class SqlitePreviews:
    """In the embedded database (BOT_STATE_DIR): survives a restart of the one dyno."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self) -> None:
        """Create the table unless it exists."""
        await self._database.execute(
            "CREATE TABLE IF NOT EXISTS previews (kind TEXT, owner TEXT, token TEXT, payload BLOB, expires_at REAL,"
            " PRIMARY KEY (kind, owner, token))"
        )

    async def save(self, kind: str, owner: str, token: str, payload: dict[str, Any], seconds: float) -> None:
        now = time.time()

        def save(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM previews WHERE expires_at <= ?", (now,))
            row = (kind, owner, token, orjson.dumps(payload), now + seconds)
            connection.execute("INSERT INTO previews VALUES (?, ?, ?, ?, ?)", row)

        await self._database.transaction(save)

    async def claim(self, kind: str, owner: str, token: str) -> dict[str, Any] | None:
        rows = await self._database.execute(
            "DELETE FROM previews WHERE kind = ? AND owner = ? AND token = ? RETURNING payload, expires_at",
            (kind, owner, token),
        )
        if not rows or rows[0][1] <= time.time():
            return None
        payload: dict[str, Any] = orjson.loads(rows[0][0])
        return payload

    async def forget_organization(self, corp_id: str) -> int:
        sql = "DELETE FROM previews WHERE owner GLOB ?"
        return await self._database.delete_rows(sql, (glob_prefix(of_organization(corp_id)),))
