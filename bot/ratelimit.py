"""Rate limits kept in this process: calls per second for each DingTalk API, and commands per minute per user."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_TRACKED_USERS = 100_000


class _Window:
    """The calls of one API that still count: in flight (end None) or finished less than a window ago."""

    def __init__(self) -> None:
        self.calls: deque[list[float | None]] = deque()
        self.lock = asyncio.Lock()
        self.finished = asyncio.Event()


class ApiRateLimiter:
    """At most `rate` calls of one API in any second as DingTalk sees them, callers served first come first served.

    A call counts from when it is sent until a second after its answer arrived: DingTalk received it somewhere in
    between, so however the network delays requests, no second on DingTalk's clock sees more than `rate`."""

    def __init__(self, rate: float, window: float = 1.0) -> None:
        self._rate = max(1, int(rate))
        self._window = window
        self._apis: dict[str, _Window] = defaultdict(_Window)

    @asynccontextmanager
    async def slot(self, api: str) -> AsyncIterator[float]:
        """Wait for a free slot for one call of `api`; yields how long that took."""
        window = self._apis[api]
        started = time.monotonic()
        async with window.lock:
            call = await self._reserve(window)
        try:
            yield time.monotonic() - started
        finally:
            call[0] = time.monotonic()
            window.finished.set()

    async def _reserve(self, window: _Window) -> list[float | None]:
        calls = window.calls
        while True:
            now = time.monotonic()
            while calls and (end := calls[0][0]) is not None and end <= now - self._window:
                calls.popleft()
            if len(calls) < self._rate:
                call: list[float | None] = [None]
                calls.append(call)
                return call
            oldest_end = calls[0][0]
            window.finished.clear()
            timeout = None if oldest_end is None else oldest_end + self._window - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(window.finished.wait(), timeout)


class UserRateLimiter:
    """At most `rate` commands per sender in any sliding minute. Past it the sender is told to slow down once per
    window; further commands are dropped quietly, so a flood cannot make the bot flood the chat back."""

    def __init__(self, rate: int, window: float = 60.0) -> None:
        self._rate = rate
        self._window = window
        self._senders: OrderedDict[str, tuple[deque[float], float]] = OrderedDict()

    def check(self, sender: str) -> str:
        """ "allow", "slow_down" (the first refusal in a window) or "drop"."""
        now = time.monotonic()
        commands, told_at = self._senders.pop(sender, (deque(), -self._window))
        while commands and commands[0] <= now - self._window:
            commands.popleft()
        if len(commands) < self._rate:
            commands.append(now)
            verdict = "allow"
        elif now - told_at >= self._window:
            verdict, told_at = "slow_down", now
        else:
            verdict = "drop"
        self._senders[sender] = (commands, told_at)  # most recent last, so the stalest senders are evicted first
        if len(self._senders) > MAX_TRACKED_USERS:
            self._senders.popitem(last=False)
        return verdict
