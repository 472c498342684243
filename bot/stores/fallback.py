"""Redis first, this process's own store while Redis fails: the stores that may fall back, wrapped (not inherited)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TypeVar

from redis.exceptions import RedisError

from bot.models import Verdict
from bot.stores.admission import Admission
from bot.stores.limiter import ApiLimiter
from bot.stores.redis.tokens import RedisTokens
from bot.stores.tokens import MemoryTokens
from bot.stores.union_ids import UnionIds

log = logging.getLogger("bot.redis")
T = TypeVar("T")
RETRY_SECONDS = 5.0  # after a failure, use local state this long before trying Redis again
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class Failover:
    """Whether Redis is used now: after a failure, not for RETRY_SECONDS; logged once when it fails and once when it
    is back. One per process, shared by every wrapped store (they share one connection)."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS) -> None:
        self._retry_seconds = retry_seconds
        self._retry_at = 0.0

    @property
    def usable(self) -> bool:
        return time.monotonic() >= self._retry_at

    async def run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        """`shared()` while Redis is usable and answers; else `local()`."""
        if not self.usable:
            return await local()
        try:
            result = await shared()
        except REDIS_FAILURES as error:
            if not self._retry_at:
                fields = {"error": type(error).__name__}
                log.warning("redis unavailable: using in-process state", extra={"fields": fields})
            self._retry_at = time.monotonic() + self._retry_seconds
            return await local()
        if self._retry_at:
            log.warning("redis reachable again: state is shared across dynos")
            self._retry_at = 0.0
        return result


class FallbackAdmission:
    def __init__(self, shared: Admission, local: Admission, failover: Failover) -> None:
        self._shared, self._local, self._failover = shared, local, failover

    async def admit(self, msg_id: str, sender: str) -> Verdict:
        return await self._failover.run(
            lambda: self._shared.admit(msg_id, sender), lambda: self._local.admit(msg_id, sender)
        )

    async def forget_organization(self, corp_id: str) -> int:
        """This process's windows and the shared ones (a Redis failure is raised: the removal is pushed again)."""
        return await self._local.forget_organization(corp_id) + await self._shared.forget_organization(corp_id)


class FallbackLimiter:
    """While Redis fails, this dyno counts its own calls against the whole limit."""

    def __init__(self, shared: ApiLimiter, local: ApiLimiter, failover: Failover) -> None:
        self._shared, self._local, self._failover = shared, local, failover

    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        return self._slot(api)

    async def forget_organization(self, corp_id: str) -> int:
        return await self._local.forget_organization(corp_id) + await self._shared.forget_organization(corp_id)

    @asynccontextmanager
    async def _slot(self, api: str) -> AsyncIterator[float]:
        async with AsyncExitStack() as held:  # only the slot that was taken is given back
            yield await self._failover.run(
                lambda: held.enter_async_context(self._shared.slot(api)),
                lambda: held.enter_async_context(self._local.slot(api)),
            )


class FallbackTokens:
    """The local cache is this dyno's near copy of the shared tokens (no round trip per call) and its fallback."""

    def __init__(self, shared: RedisTokens, local: MemoryTokens, failover: Failover) -> None:
        self._shared, self._local, self._failover = shared, local, failover

    async def forget_organization(self, corp_id: str) -> int:
        """This dyno's near copies and the shared tokens."""
        return await self._local.forget_organization(corp_id) + await self._shared.forget_organization(corp_id)

    async def get(self, key: str) -> str:
        token = await self._local.get(key)
        if token:
            return token

        async def from_redis() -> str:
            token, lifetime = await self._shared.get_with_lifetime(key)
            if token:
                await self._local.put(key, token, lifetime)
            return token

        return await self._failover.run(from_redis, _constant(""))

    async def put(self, key: str, token: str, lifetime: float) -> None:
        await self._local.put(key, token, lifetime)
        await self._failover.run(lambda: self._shared.put(key, token, lifetime), _constant(None))

    async def drop(self, key: str, rejected: str) -> None:
        await self._local.drop(key, rejected)
        await self._failover.run(lambda: self._shared.drop(key, rejected), _constant(None))

    def fetching(self, key: str) -> AbstractAsyncContextManager[None]:
        return self._fetching(key)

    @asynccontextmanager
    async def _fetching(self, key: str) -> AsyncIterator[None]:
        # this dyno's callers queue locally, so one of them at a time asks Redis for the lock of all dynos
        async with self._local.fetching(key), AsyncExitStack() as held:
            await self._failover.run(lambda: held.enter_async_context(self._shared.fetching(key)), _constant(None))
            yield


class FallbackUnionIds:
    """The local cache is this dyno's near copy (no round trip for a sender seen before) and its fallback."""

    def __init__(self, shared: UnionIds, local: UnionIds, failover: Failover) -> None:
        self._shared, self._local, self._failover = shared, local, failover

    async def get(self, staff_id: str) -> str | None:
        union_id = await self._local.get(staff_id)
        if union_id is not None:
            return union_id

        async def from_redis() -> str | None:
            union_id = await self._shared.get(staff_id)
            if union_id is not None:
                await self._local.put(staff_id, union_id)
            return union_id

        return await self._failover.run(from_redis, _constant(None))

    async def put(self, staff_id: str, union_id: str) -> None:
        await self._local.put(staff_id, union_id)
        if self._failover.usable:  # written behind: nobody waits for it
            await self._shared.put(staff_id, union_id)

    async def forget_organization(self, corp_id: str) -> int:
        # a cache of what DingTalk answers anyway: while Redis fails, the near copies alone are forgotten
        shared = await self._failover.run(lambda: self._shared.forget_organization(corp_id), _constant(0))
        return await self._local.forget_organization(corp_id) + shared


def _constant(value: T) -> Callable[[], Awaitable[T]]:
    """A fallback that needs no local state: this value."""

    async def constant() -> T:
        return value

    return constant
