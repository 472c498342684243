"""The per-API limiter in Redis, shared by every dyno; Redis failures are raised (see fallback.py)."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bot.stores import keys
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import script, unlink_matching, write_behind

FULL_WINDOW_POLL_SECONDS = 0.1  # at most this long between asking again while an API's window is full
MAX_CALL_MS = 30_000  # a call whose answer never comes stops counting against the rate limit after this long

# The scripts read the clock of Redis itself, so dynos with drifting clocks still agree on every window.
# _RESERVE grants as many of the waiting calls (ARGV[4]...) as the window has room for, oldest waiter first; it
# returns how many and, when not all fit, the milliseconds until the next slot could free up.
_RESERVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local limit, window, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local granted = math.max(0, math.min(limit - redis.call('ZCARD', KEYS[1]), #ARGV - 3))
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now + longest, ARGV[3 + i])
end
if granted > 0 then redis.call('PEXPIRE', KEYS[1], window + longest) end
if granted == #ARGV - 3 then return {granted, 0} end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {granted, math.max(1, tonumber(oldest[2]) + window - now)}
"""
_RELEASE = """
local t = redis.call('TIME')
return redis.call('ZADD', KEYS[1], 'XX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
"""


class RedisLimiter:
    """At most `api_qps` calls of each API per `window` (a second; shorter in tests) across dynos; the calls waiting
    in this dyno are reserved together, one script call for many."""

    def __init__(self, batcher: CommandBatcher, keys: KeyBuilder, api_qps: float, window: float = 1.0) -> None:
        self._batcher = batcher
        self._keys = keys
        self._limits = (max(1, int(api_qps)), max(1, round(window * 1000)), MAX_CALL_MS)
        self._waiting: dict[str, collections.deque[asyncio.Future[str]]] = {}
        self._reserving: dict[str, asyncio.Task[None]] = {}

    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        return self._slot(api)

    @asynccontextmanager
    async def _slot(self, api: str) -> AsyncIterator[float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = self._keys("api", api)
        member = await self._reservation(key)
        try:
            yield loop.time() - started
        finally:
            write_behind(self._batcher, "EVAL", _RELEASE, 1, key, member)

    async def forget_organization(self, corp_id: str) -> int:
        """The windows of its APIs."""
        return await unlink_matching(self._batcher, self._keys.pattern("api", keys.api(corp_id, "")))

    def close(self) -> None:
        """Stop reserving, at shutdown, for calls that will never be made."""
        for reserving in self._reserving.values():
            reserving.cancel()

    def _reservation(self, key: str) -> asyncio.Future[str]:
        """Queue for a slot of this API: its member in Redis once granted; the Redis error if reserving failed."""
        waiting = self._waiting.setdefault(key, collections.deque())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        if key not in self._reserving:
            self._reserving[key] = asyncio.create_task(self._reserve_for_waiting(key, waiting))
        return future

    async def _reserve_for_waiting(self, key: str, waiting: collections.deque[asyncio.Future[str]]) -> None:
        # One task per API in each dyno asks for all of its waiting calls at once, first come first served: one
        # script call for many calls, not one each, and no crowd polling Redis while the window is full.
        try:
            while waiting:
                members = [uuid.uuid4().hex for _ in waiting]
                answer = await script(self._batcher, _RESERVE, [key], *self._limits, *members)
                granted, wait_ms = int(answer[0]), int(answer[1])
                for member in members[:granted]:
                    future = waiting.popleft()  # only this task takes from the left; callers only append
                    if not future.done():
                        future.set_result(member)
                    else:  # its caller stopped waiting (shutdown): give the slot back
                        write_behind(self._batcher, "EVAL", _RELEASE, 1, key, member)
                if wait_ms:
                    await asyncio.sleep(min(wait_ms / 1000, FULL_WINDOW_POLL_SECONDS))
        except Exception as error:  # Redis failed: every waiting caller learns it (and counts locally instead)
            while waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_exception(error)
        finally:
            del self._reserving[key]
            while waiting:  # cancelled at shutdown: nobody may wait forever, they count locally instead
                future = waiting.popleft()
                if not future.done():
                    future.set_exception(ConnectionError("the shared limiter was closed"))
