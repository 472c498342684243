"""State that dynos may share: repeats, rate limits, the access token and unionIds; here kept in this process."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bot.ratelimit import ApiRateLimiter, UserRateLimiter

UNION_ID_CACHE_SIZE = 50_000  # far more than the employees of one company; a unionId never changes


class LocalState:
    """The embedded default for one dyno; RedisState shares the same operations across dynos."""

    def __init__(self, api_qps: float, user_rate: int, user_window: float = 60.0) -> None:
        self._api = ApiRateLimiter(api_qps)
        self._users = UserRateLimiter(user_rate, user_window)
        self._union_ids: OrderedDict[str, str] = OrderedDict()
        self._token = ""
        self._token_expires_at = 0.0
        self._refreshing = asyncio.Lock()

    async def close(self) -> None:
        return None

    def api_slot(self, api: str) -> AbstractAsyncContextManager[float]:
        """Wait for a slot for one call of `api` under the per-API limit; yields the seconds waited."""
        return self._api.slot(api)

    async def admit(self, msg_id: str, sender: str) -> str:
        """ "taken" if another dyno has this message, else the sender's rate limit: "allow", "slow_down" or "drop".
        Alone, the inbox has already dropped this process's repeats."""
        return self._users.check(sender)

    async def union_id(self, staff_id: str) -> str | None:
        union_id = self._union_ids.get(staff_id)
        if union_id is not None:
            self._union_ids.move_to_end(staff_id)
        return union_id

    async def remember_union_id(self, staff_id: str, union_id: str) -> None:
        self._union_ids[staff_id] = union_id
        if len(self._union_ids) > UNION_ID_CACHE_SIZE:
            self._union_ids.popitem(last=False)

    async def token(self) -> str:
        """The app's access token if one is known and still fresh, else ""."""
        return self._token if time.monotonic() < self._token_expires_at else ""

    async def store_token(self, token: str, lifetime: float) -> None:
        self._token, self._token_expires_at = token, time.monotonic() + lifetime

    async def drop_token(self, rejected: str) -> None:
        if self._token == rejected:  # another call may already have fetched a fresh one
            self._token = ""

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while fetching a new token, so that only one caller does."""
        return _holding(self._refreshing)


@asynccontextmanager
async def _holding(lock: asyncio.Lock) -> AsyncIterator[None]:
    async with lock:
        yield
