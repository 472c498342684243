"""The token cache: access tokens by key (the app, an organization or a user), fetched by one caller at a time."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from bot.stores.keys import token_of_organization

MAX_TOKENS = 100_000  # one per organization or user at most; the least recently used beyond this are forgotten


class TokenCache(Protocol):
    async def get(self, key: str) -> str:
        """The token under `key` while it is fresh, else ""."""
        ...

    async def put(self, key: str, token: str, lifetime: float) -> None:
        """Keep `token` under `key` for `lifetime` seconds."""
        ...

    async def drop(self, key: str, rejected: str) -> None:
        """Forget the token under `key` if it still is `rejected` (another caller may have stored a new one)."""
        ...

    def fetching(self, key: str) -> AbstractAsyncContextManager[None]:
        """Held while fetching a new token for `key`, so that only one caller does; others reuse what it stored."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Drop the organization's own token and its users'; how many."""
        ...


class KeyedLocks:
    """One asyncio.Lock per key while someone holds or waits for it; none kept for keys nobody uses."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def holding(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


class MemoryTokens:
    """Tokens of this process, at most MAX_TOKENS, by the clock of this process."""

    def __init__(self, capacity: int = MAX_TOKENS) -> None:
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._capacity = capacity
        self._locks = KeyedLocks()

    async def get(self, key: str) -> str:
        token, expires_at = self._tokens.get(key, ("", 0.0))
        if not token:
            return ""
        if time.monotonic() >= expires_at:
            del self._tokens[key]
            return ""
        self._tokens.move_to_end(key)
        return token

    async def put(self, key: str, token: str, lifetime: float) -> None:
        self._tokens[key] = (token, time.monotonic() + lifetime)
        self._tokens.move_to_end(key)
        if len(self._tokens) > self._capacity:
            self._tokens.popitem(last=False)

    async def drop(self, key: str, rejected: str) -> None:
        if self._tokens.get(key, ("", 0.0))[0] == rejected:
            del self._tokens[key]

    def fetching(self, key: str) -> AbstractAsyncContextManager[None]:
        return self._locks.holding(key)

    async def forget_organization(self, corp_id: str) -> int:
        gone = [key for key in self._tokens if token_of_organization(key, corp_id)]
        for key in gone:
            del self._tokens[key]
        return len(gone)
