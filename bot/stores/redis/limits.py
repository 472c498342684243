"""Admission and the per-API limiter in Redis, shared by every dyno; Redis failures are raised (see fallback.py)."""

from __future__ import annotations

import asyncio
import collections
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import redis.asyncio as redis

from bot.models import Verdict
from bot.stores.dedupe import REMEMBER_SECONDS
from bot.stores.redis.batch import CommandBatcher

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
# A message is claimed before its sender's command is counted: a copy that another dyno handles counts once.
_ADMIT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 'taken' end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], window)
  return 'allow'
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', window) then return 'slow_down' end
return 'drop'
"""


def connect(url: str, verify_tls: bool) -> redis.Redis:
    """A client for REDIS_URL; rediss:// without verification for providers with self-signed certificates."""
    options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "decode_responses": True}
    if url.startswith("rediss://") and not verify_tls:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
        options["ssl_check_hostname"] = False
    return redis.Redis.from_url(url, **options)


def script(batcher: CommandBatcher, source: str, keys: list[str], *args: Any) -> asyncio.Future[Any]:
    # EVAL rather than EVALSHA: Redis caches the script by its hash either way, and a restarted Redis that forgot it
    # needs no reload
    return batcher.send("EVAL", source, len(keys), *keys, *args)


def write_behind(batcher: CommandBatcher, *command: Any) -> None:
    """A write no caller waits for (giving a slot back, remembering a unionId): should it fail, the state is only less
    shared for a while, not worth a round trip before the card."""
    batcher.send(*command).add_done_callback(_ignore_failure)


def _ignore_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log it as never retrieved


class RedisAdmission:
    """Duplicate claims and per-sender windows in Redis, one script call per message."""

    def __init__(
        self,
        batcher: CommandBatcher,
        prefix: str,
        user_rate: int,
        user_window: float = 60.0,
        dedupe_seconds: float = REMEMBER_SECONDS,
    ) -> None:
        self._batcher = batcher
        self._prefix = prefix
        self._arguments = (max(1, round(dedupe_seconds)), user_rate, max(1, round(user_window * 1000)))

    async def admit(self, msg_id: str, sender: str) -> Verdict:
        keys = [f"{self._prefix}msg:{msg_id}", f"{self._prefix}user:{sender}", f"{self._prefix}told:{sender}"]
        return Verdict(await script(self._batcher, _ADMIT, keys, *self._arguments, uuid.uuid4().hex))


class RedisLimiter:
    """At most `api_qps` calls of each API per `window` (a second; shorter in tests) across dynos; the calls waiting
    in this dyno are reserved together, one script call for many."""

    def __init__(self, batcher: CommandBatcher, prefix: str, api_qps: float, window: float = 1.0) -> None:
        self._batcher = batcher
        self._prefix = prefix
        self._limits = (max(1, int(api_qps)), max(1, round(window * 1000)), MAX_CALL_MS)
        self._waiting: dict[str, collections.deque[asyncio.Future[str]]] = {}
        self._reserving: dict[str, asyncio.Task[None]] = {}

    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        return self._slot(api)

    @asynccontextmanager
    async def _slot(self, api: str) -> AsyncIterator[float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = f"{self._prefix}api:{api}"
        member = await self._reservation(key)
        try:
            yield loop.time() - started
        finally:
            write_behind(self._batcher, "EVAL", _RELEASE, 1, key, member)

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
