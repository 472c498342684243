"""Tokens, unionIds, suite tickets and user grants in Redis, shared by every dyno; failures are raised."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.limits import script, write_behind

UNION_ID_DAYS = 30
SCAN_COUNT = 1000  # keys Redis looks at per SCAN step while forgetting an organization's unionIds
_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")
TOKEN_LOCK_MS = 10_000
POLL_SECONDS = 0.02  # waiting for another dyno's token
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokens:
    """Tokens with their lifetime as the key's expiry; one fetch at a time per key across dynos (a lock key)."""

    def __init__(self, batcher: CommandBatcher, prefix: str) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}token:"
        self._lock_prefix = f"{prefix}token-lock:"

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


class RedisUnionIds:
    """unionIds for UNION_ID_DAYS; remembered without waiting for Redis's answer."""

    def __init__(self, batcher: CommandBatcher, prefix: str) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}union:"

    async def get(self, staff_id: str) -> str | None:
        value = await self._batcher.send("GET", self._prefix + staff_id)
        return None if value is None else str(value)

    async def put(self, staff_id: str, union_id: str) -> None:
        write_behind(self._batcher, "SET", self._prefix + staff_id, union_id, "EX", UNION_ID_DAYS * 86_400)

    async def forget(self, prefix: str) -> None:
        pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", self._prefix + prefix) + "*"  # the prefix is matched literally
        cursor = "0"
        while True:
            cursor, keys = await self._batcher.send("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            if keys:
                await self._batcher.send("UNLINK", *keys)
            if str(cursor) == "0":
                return


# The ticket (KEYS[1]) and when it was made (KEYS[2]) replaced together, unless the stored one was made later.
_STORE_IF_NEWER = """
local born = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) < born then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class RedisSuiteTickets:
    """The latest ticket per suite, kept without expiry (Redis persistence keeps it across restarts)."""

    def __init__(self, batcher: CommandBatcher, prefix: str) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}suite-ticket:"

    async def latest(self, suite_key: str) -> str | None:
        value = await self._batcher.send("GET", self._prefix + suite_key)
        return None if value is None else str(value)

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        keys = [self._prefix + suite_key, f"{self._prefix}born:{suite_key}"]
        return bool(await self._batcher.send("EVAL", _STORE_IF_NEWER, 2, *keys, ticket, born_ms))


class RedisGrants:
    """One blob per user, base64 in Redis (the shared client decodes answers as text)."""

    def __init__(self, batcher: CommandBatcher, prefix: str) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}grant:"

    async def get(self, user: str) -> bytes | None:
        value = await self._batcher.send("GET", self._prefix + user)
        return None if value is None else base64.b64decode(value)

    async def put(self, user: str, blob: bytes, expires_in: float | None = None) -> None:
        lifetime = () if expires_in is None else ("PX", max(1, int(expires_in * 1000)))
        await self._batcher.send("SET", self._prefix + user, base64.b64encode(blob).decode(), *lifetime)

    async def delete(self, user: str) -> bool:
        return bool(await self._batcher.send("DEL", self._prefix + user))
