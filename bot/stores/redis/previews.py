"""Pending bulk actions in Redis: shared by every dyno; Redis expires them."""

from __future__ import annotations

from typing import Any

import orjson

from bot.stores.keys import KeyBuilder, glob_literal, of_organization
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import unlink_matching


class RedisPreviews:
    """In Redis (REDIS_URL): shared by every dyno; Redis expires them."""

    def __init__(self, redis: CommandBatcher, keys: KeyBuilder) -> None:
        self._redis = redis
        self._keys = keys

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
        return self._keys("pending", f"{kind}:{token}:{owner}")

    async def forget_organization(self, corp_id: str) -> int:
        """Its users' pending sets (the owner comes last in the key: `{kind}:{token}:{owner}`)."""
        owners = glob_literal(of_organization(corp_id))
        return await unlink_matching(self._redis, f"{glob_literal(self._keys.concern('pending'))}*:*:{owners}*")
