"""Tokens in Redis, shared by every dyno: the lifetime is the key's expiry; one fetch at a time per key."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bot.stores.keys import KeyBuilder, of_organization, organization_token, user_token
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import script, unlink, unlink_matching, write_behind

TOKEN_LOCK_MS = 10_000
POLL_SECONDS = 0.02  # waiting for another dyno's token
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokens:
    """Tokens with their lifetime as the key's expiry; one fetch at a time per key across dynos (a lock key)."""

    def __init__(self, batcher: CommandBatcher, keys: KeyBuilder) -> None:
        self._batcher = batcher
        self._prefix = keys.concern("token")
        self._lock_prefix = keys.concern("token-lock")
        self._keys = keys

    async def get(self, key: str) -> str:
        return (await self.get_with_lifetime(key))[0]

    async def get_with_lifetime(self, key: str) -> tuple[str, float]:
        """The token and the seconds it has left, or ("", 0)."""
        name = self._prefix + key
        token, ttl_ms = await asyncio.gather(self._batcher.send("GET", name), self._batcher.send("PTTL", name))
        return (str(token), ttl_ms / 1000) if token and ttl_ms > 0 else ("", 0.0)

    async def put(self, key: str, token: str, lifetime: float) -> None:
        await self._batcher.send("SET", self._prefix + key, token, "PX", max(1, int(lifetime * 1000)))

    async def drop(self, key: str, rejected: str) -> None:
        await script(self._batcher, _DELETE_IF_EQUAL, [self._prefix + key], rejected)

    def fetching(self, key: str) -> AbstractAsyncContextManager[None]:
        return self._fetching(key)

    @asynccontextmanager
    async def _fetching(self, key: str) -> AsyncIterator[None]:
        """Take the lock, or wait until its holder stored a token (or the lock expired)."""
        lock, owner = self._lock_prefix + key, uuid.uuid4().hex
        deadline = time.monotonic() + TOKEN_LOCK_MS / 1000
        while time.monotonic() < deadline:
            if await self._batcher.send("SET", lock, owner, "NX", "PX", TOKEN_LOCK_MS) or await self.get(key):
                break
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:  # should this fail, the lock expires on its own
            write_behind(self._batcher, "EVAL", _DELETE_IF_EQUAL, 1, lock, owner)

    async def forget_organization(self, corp_id: str) -> int:
        """Its own token and its users' (their fetch locks expire by themselves)."""
        own = await unlink(self._batcher, self._keys("token", organization_token(corp_id)))
        users = self._keys.pattern("token", user_token(of_organization(corp_id)))
        return own + await unlink_matching(self._batcher, users)
