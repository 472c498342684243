"""Pending bulk actions (a preview awaiting Confirm, a done set awaiting Undo): each usable once, by its owner only."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Protocol

import orjson

from bot.stores.redis.batch import CommandBatcher
from bot.stores.sqlite.database import Database


class PreviewStore(Protocol):
    """Payloads kept under (kind, owner, token) for a while. `claim` takes one away atomically: of several dynos
    and presses, one gets it; a press with another owner gets nothing and leaves it in place."""

    async def save(self, kind: str, owner: str, token: str, payload: dict[str, Any], seconds: float) -> None: ...

    async def claim(self, kind: str, owner: str, token: str) -> dict[str, Any] | None: ...


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


class RedisPreviews:
    """In Redis (REDIS_URL): shared by every dyno; Redis expires them."""

    def __init__(self, redis: CommandBatcher, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"calbot:{namespace}:pending:"

    async def save(self, kind: str, owner: str, token: str, payload: dict[str, Any], seconds: float) -> None:
        await self._redis.send("SET", self._key(kind, owner, token), orjson.dumps(payload), "PX", int(seconds * 1000))

    async def claim(self, kind: str, owner: str, token: str) -> dict[str, Any] | None:
        value = await self._redis.send("GETDEL", self._key(kind, owner, token))
        if value is None:
            return None
        payload: dict[str, Any] = orjson.loads(value)
        return payload

    def _key(self, kind: str, owner: str, token: str) -> str:
        # the token is checked to be url-safe base64 (no ":"), so no other owner's key can be spelled with it
        return f"{self._prefix}{kind}:{token}:{owner}"
