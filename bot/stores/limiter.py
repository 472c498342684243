"""The per-API limiter: calls per second for each DingTalk API, counted in this process (here) or across dynos."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.stores.keys import api as api_key

# APIs (per organization, in an ISV app) with a window kept; past this, windows with no call that still counts go
IDLE_WINDOWS_SWEPT_FROM = 10_000


class ApiLimiter(Protocol):
    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        """Wait for a slot for one call of `api`, held while the call is made; yields the seconds waited."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Drop the windows of the organization's APIs; how many."""
        ...


class _Window:
    """The calls of one API that still count: in flight (end None) or finished less than a window ago."""

    def __init__(self) -> None:
        self.calls: deque[list[float | None]] = deque()
        self.lock = asyncio.Lock()
        self.finished = asyncio.Event()


class MemoryLimiter:
    """At most `rate` calls of one API in any second as DingTalk sees them, callers served first come first served.

    A call counts from when it is sent until a second after its answer arrived: DingTalk received it somewhere in
    between, so however the network delays requests, no second on DingTalk's clock sees more than `rate`."""

    def __init__(self, rate: float, window: float = 1.0, sweep_from: int = IDLE_WINDOWS_SWEPT_FROM) -> None:
        self._rate = max(1, int(rate))
        self._window = window
        self._apis: dict[str, _Window] = {}
        self._sweep_from = self._sweep_at = sweep_from

    def __len__(self) -> int:
        """APIs with a window kept."""
        return len(self._apis)

    def slot(self, api: str) -> Slot:
        """Wait for a free slot for one call of `api` (async with); yields how long that took."""
        window = self._apis.get(api)
        if window is None:
            if len(self._apis) >= self._sweep_at:
                self._forget_idle_windows()
            window = self._apis[api] = _Window()
        return Slot(self, window)

    async def forget_organization(self, corp_id: str) -> int:
        """Drop the windows of the organization's APIs that no caller holds or waits for."""
        scope = api_key(corp_id, "")
        gone = [api for api, window in self._apis.items() if api.startswith(scope) and not window.lock.locked()]
        for api in gone:
            del self._apis[api]
        return len(gone)

    def _forget_idle_windows(self) -> None:
        """Drop the windows no caller holds or waits for and whose calls all ended a window ago."""
        since = time.monotonic() - self._window
        for api, window in list(self._apis.items()):
            ended = all(end is not None and end <= since for (end,) in window.calls)
            if ended and not window.lock.locked():
                del self._apis[api]
        self._sweep_at = max(self._sweep_from, 2 * len(self._apis))

    def _take(self, window: _Window) -> list[float | None] | None:
        """A slot now, or None when the window is full."""
        calls = window.calls
        now = time.monotonic()
        while calls and (end := calls[0][0]) is not None and end <= now - self._window:
            calls.popleft()
        if len(calls) < self._rate:
            call: list[float | None] = [None]
            calls.append(call)
            return call
        return None

    async def _reserve(self, window: _Window) -> list[float | None]:
        while (call := self._take(window)) is None:
            oldest_end = window.calls[0][0]
            window.finished.clear()
            timeout = None if oldest_end is None else oldest_end + self._window - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(window.finished.wait(), timeout)
        return call


class Slot:
    """One call's hold on a slot of its API (async with). A class rather than a generator-based context manager,
    and no lock or await when a slot is free and nobody waits: it is entered for every DingTalk call."""

    __slots__ = ("_call", "_limiter", "_window")

    def __init__(self, limiter: MemoryLimiter, window: _Window) -> None:
        self._limiter = limiter
        self._window = window
        self._call: list[float | None] | None = None

    def take_now(self) -> bool:
        """Take a slot if one is free and nobody waits for one (first come, first served); never waits."""
        if self._window.lock.locked():
            return False
        self._call = self._limiter._take(self._window)
        return self._call is not None

    async def __aenter__(self) -> float:
        if self.take_now():
            return 0.0
        started = time.monotonic()
        async with self._window.lock:
            self._call = await self._limiter._reserve(self._window)
        return time.monotonic() - started

    async def __aexit__(self, *exc: object) -> None:
        assert self._call is not None
        self._call[0] = time.monotonic()
        self._window.finished.set()
