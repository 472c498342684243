"""Rate limits kept in this process: calls per second for each DingTalk API, and commands per minute per user."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict, deque

# DingTalk counts calls per second on its side; a little slack keeps network jitter from pushing a window over.
WINDOW_SLACK = 0.05
MAX_TRACKED_USERS = 100_000


class ApiRateLimiter:
    """At most `rate` calls of one API in any sliding window of a second; callers wait their turn, first come first
    served, and learn how long they waited."""

    def __init__(self, rate: float, window: float = 1.0) -> None:
        self._rate = max(1, int(rate))
        self._window = window + WINDOW_SLACK
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def acquire(self, api: str) -> float:
        started = time.monotonic()
        calls = self._calls[api]
        async with self._locks[api]:
            while True:
                now = time.monotonic()
                while calls and calls[0] <= now - self._window:
                    calls.popleft()
                if len(calls) < self._rate:
                    calls.append(now)
                    return now - started
                await asyncio.sleep(calls[0] + self._window - now)


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
