"""State shared by every dyno through Redis; while Redis fails, each dyno falls back to its own LocalState."""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.dedupe import REMEMBER_SECONDS
from bot.redis_batch import CommandBatcher
from bot.state import LocalState

log = logging.getLogger("bot.redis")
T = TypeVar("T")

RETRY_SECONDS = 5.0  # after a failure, use local state this long before trying Redis again
UNION_ID_DAYS = 30
TOKEN_LOCK_MS = 10_000
POLL_SECONDS = 0.02  # waiting for another dyno's token
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
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def connect(url: str, verify_tls: bool) -> redis.Redis:
    """A client for REDIS_URL; rediss:// without verification for providers with self-signed certificates."""
    options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "decode_responses": True}
    if url.startswith("rediss://") and not verify_tls:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
        options["ssl_check_hostname"] = False
    return redis.Redis.from_url(url, **options)


class RedisState(LocalState):
    """Duplicate claims, rate limits, the token and unionIds shared across dynos; LocalState while Redis fails."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        api_qps: float,
        user_rate: int,
        user_window: float = 60.0,
        dedupe_seconds: float = REMEMBER_SECONDS,
    ) -> None:
        super().__init__(api_qps, user_rate, user_window)
        self._windows = (max(1, round(dedupe_seconds)), max(1, round(user_window * 1000)))
        self._redis = CommandBatcher(client)
        self._prefix = f"calbot:{namespace}:"
        self._user_rate = user_rate
        self._retry_at = 0.0
        self._limits = (max(1, int(api_qps)), 1000, MAX_CALL_MS)
        self._waiting: dict[str, collections.deque[asyncio.Future[str | None]]] = {}
        self._reserving: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for reserving in self._reserving.values():  # only at shutdown, for calls that will never be made
            reserving.cancel()
        await self._redis.aclose()

    def _send(self, *command: Any) -> asyncio.Future[Any]:
        return self._redis.send(*command)

    def _script(self, script: str, keys: list[str], *args: Any) -> asyncio.Future[Any]:
        # EVAL rather than EVALSHA: Redis caches the script by its hash either way, and a restarted Redis that
        # forgot it needs no reload
        return self._send("EVAL", script, len(keys), *keys, *args)

    def _write_behind(self, *command: Any) -> None:
        """A write no command waits for: giving a slot back, remembering a unionId. Should it fail, the state is
        only less shared for a while (a slot expires after MAX_CALL_MS), not worth a round trip before the card."""
        if time.monotonic() >= self._retry_at:
            self._send(*command).add_done_callback(_ignore_failure)

    async def _shared(self, operation: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        """Run an operation on Redis; on failure log once, use the local fallback and retry Redis later."""
        if time.monotonic() < self._retry_at:
            return await fallback()
        try:
            result = await operation()
        except (RedisError, OSError, TimeoutError) as error:
            if not self._retry_at:
                log.warning(
                    "redis unavailable: using in-process state", extra={"fields": {"error": type(error).__name__}}
                )
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return await fallback()
        if self._retry_at:
            log.warning("redis reachable again: state is shared across dynos")
            self._retry_at = 0.0
        return result

    async def admit(self, msg_id: str, sender: str) -> str:
        async def admit_in_redis() -> str:
            keys = [f"{self._prefix}msg:{msg_id}", f"{self._prefix}user:{sender}", f"{self._prefix}told:{sender}"]
            member = uuid.uuid4().hex
            dedupe_seconds, user_window_ms = self._windows
            return str(await self._script(_ADMIT, keys, dedupe_seconds, self._user_rate, user_window_ms, member))

        return await self._shared(admit_in_redis, lambda: super(RedisState, self).admit(msg_id, sender))

    def api_slot(self, api: str) -> AbstractAsyncContextManager[float]:
        return self._api_slot(api)

    @asynccontextmanager
    async def _api_slot(self, api: str) -> AsyncIterator[float]:
        started = time.monotonic()
        key = f"{self._prefix}api:{api}"
        member = await self._reservation(key)
        if member is None:  # Redis failed: this dyno counts on its own until it is back
            async with super().api_slot(api) as waited:
                yield waited
            return
        try:
            yield time.monotonic() - started
        finally:
            self._release(key, member)

    def _reservation(self, key: str) -> asyncio.Future[str | None]:
        """Queue for a slot of this API: its member in Redis once granted, or None while Redis fails."""
        waiting = self._waiting.setdefault(key, collections.deque())
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        if key not in self._reserving:
            self._reserving[key] = asyncio.create_task(self._reserve_for_waiting(key, waiting))
        return future

    async def _reserve_for_waiting(self, key: str, waiting: collections.deque[asyncio.Future[str | None]]) -> None:
        # One task per API in each dyno asks for all of its waiting calls at once, first come first served: one
        # script call for many calls, not one each, and no crowd polling Redis while the window is full.
        try:
            while waiting:
                members = [uuid.uuid4().hex for _ in waiting]
                reserve = functools.partial(self._script, _RESERVE, [key], *self._limits, *members)
                answer = await self._shared(reserve, _local(None))
                granted, wait_ms = (int(answer[0]), int(answer[1])) if answer else (len(members), 0)
                for member in members[:granted]:
                    future = waiting.popleft()  # only this task takes from the left; callers only append
                    if not future.done():
                        future.set_result(member if answer else None)
                    elif answer:  # its caller stopped waiting (shutdown): give the slot back
                        self._release(key, member)
                if wait_ms:
                    await asyncio.sleep(min(wait_ms / 1000, FULL_WINDOW_POLL_SECONDS))
        finally:
            del self._reserving[key]
            while waiting:  # only if this task failed: nobody may wait forever, they count locally instead
                future = waiting.popleft()
                if not future.done():
                    future.set_result(None)

    def _release(self, key: str, member: str) -> None:
        self._write_behind("EVAL", _RELEASE, 1, key, member)

    async def union_id(self, staff_id: str) -> str | None:
        cached = await super().union_id(staff_id)
        if cached is not None:
            return cached

        async def get_from_redis() -> str | None:
            value = await self._send("GET", f"{self._prefix}union:{staff_id}")
            if value is None:
                return None
            await super(RedisState, self).remember_union_id(staff_id, str(value))
            return str(value)

        return await self._shared(get_from_redis, _local(None))

    async def remember_union_id(self, staff_id: str, union_id: str) -> None:
        await super().remember_union_id(staff_id, union_id)
        self._write_behind("SET", f"{self._prefix}union:{staff_id}", union_id, "EX", UNION_ID_DAYS * 86_400)

    async def token(self) -> str:
        cached = await super().token()
        if cached:
            return cached

        async def get_from_redis() -> str:
            key = f"{self._prefix}token"
            token, ttl_ms = await asyncio.gather(self._send("GET", key), self._send("PTTL", key))
            if token and ttl_ms > 0:
                await super(RedisState, self).store_token(token, ttl_ms / 1000)
                return str(token)
            return ""

        return await self._shared(get_from_redis, _local(""))

    async def store_token(self, token: str, lifetime: float) -> None:
        await super().store_token(token, lifetime)
        key = f"{self._prefix}token"
        await self._shared(lambda: self._send("SET", key, token, "PX", int(lifetime * 1000)), _local(None))

    async def drop_token(self, rejected: str) -> None:
        await super().drop_token(rejected)
        key = f"{self._prefix}token"
        await self._shared(lambda: self._script(_DELETE_IF_EQUAL, [key], rejected), _local(None))

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        return self._refresh_lock()

    @asynccontextmanager
    async def _refresh_lock(self) -> AsyncIterator[None]:
        """Across dynos: take the Redis lock, or wait until its holder stored a token (or the lock expired)."""
        key, owner = f"{self._prefix}token-lock", uuid.uuid4().hex
        async with super().refresh_lock():
            deadline = time.monotonic() + TOKEN_LOCK_MS / 1000
            while time.monotonic() < deadline:
                taken = await self._shared(
                    lambda: self._send("SET", key, owner, "NX", "PX", TOKEN_LOCK_MS), _local(True)
                )
                if taken or await self.token():
                    break
                await asyncio.sleep(POLL_SECONDS)
            try:
                yield
            finally:
                await self._shared(lambda: self._script(_DELETE_IF_EQUAL, [key], owner), _local(None))


def _local(value: T) -> Callable[[], Awaitable[T]]:
    """A fallback that needs no local state: this value."""

    async def constant() -> T:
        return value

    return constant


def _ignore_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log it as never retrieved
