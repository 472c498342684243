"""User grants in Redis: one blob per user, base64 (the shared client decodes answers as text)."""

from __future__ import annotations

import base64

from bot.stores.keys import KeyBuilder, of_organization, pending_connect
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import unlink_matching


class RedisGrants:
    """One blob per user, base64 in Redis (the shared client decodes answers as text)."""

    def __init__(self, batcher: CommandBatcher, keys: KeyBuilder) -> None:
        self._batcher = batcher
        self._prefix = keys.concern("grant")
        self._keys = keys

    async def get(self, user: str) -> bytes | None:
        value = await self._batcher.send("GET", self._prefix + user)
        return None if value is None else base64.b64decode(value)

    async def put(self, user: str, blob: bytes, expires_in: float | None = None) -> None:
        lifetime = () if expires_in is None else ("PX", max(1, int(expires_in * 1000)))
        await self._batcher.send("SET", self._prefix + user, base64.b64encode(blob).decode(), *lifetime)

    async def delete(self, user: str) -> bool:
        return bool(await self._batcher.send("DEL", self._prefix + user))

    async def forget_organization(self, corp_id: str) -> int:
        """Its users' grants and their pending connects."""
        tenants = of_organization(corp_id)
        patterns = (self._keys.pattern("grant", tenants), self._keys.pattern("grant", pending_connect(tenants)))
        return await unlink_matching(self._batcher, *patterns)
