"""The per-API limiter: calls per second for each DingTalk API, counted in this process or across dynos."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.stores.ratelimit import ApiRateLimiter as MemoryLimiter


class ApiLimiter(Protocol):
    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        """Wait for a slot for one call of `api`, held while the call is made; yields the seconds waited."""
        ...


__all__ = ["ApiLimiter", "MemoryLimiter"]
