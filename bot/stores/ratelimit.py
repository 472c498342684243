"""Rate limits kept in this process: calls per second for each DingTalk API, and commands per minute per user."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque

from bot.models import Verdict

MAX_TRACKED_USERS = 100_000
NEVER = -math.inf  # "told at" of a sender never told to slow down
# APIs (per organization, in an ISV app) with a window kept; past this, windows with no call that still counts go
IDLE_WINDOWS_SWEPT_FROM = 10_000


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

    def __init__(self, limiter: ApiRateLimiter, window: _Window) -> None:
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


class UserRateLimiter:
    """At most `rate` commands per sender in any sliding `window` (a minute). Past it the sender is told to slow down
    once per window; further commands are dropped quietly, so a flood cannot make the bot flood the chat back.

    Memory: per sender active within the window, the time of its one command (most senders send one), or a short
    list (when it was last told, then its command times); at most MAX_TRACKED_USERS of them; senders quiet for a
    whole window are forgotten as new ones arrive."""

    def __init__(self, rate: int, window: float = 60.0) -> None:
        self._rate = rate
        self._window = window
        self._senders: OrderedDict[str, float | list[float]] = OrderedDict()  # least recently checked first

    def __len__(self) -> int:
        return len(self._senders)

    def forget(self, prefix: str) -> None:
        """Drop the windows of the senders whose key starts with `prefix` (an organization that removed the app)."""
        for sender in [sender for sender in self._senders if sender.startswith(prefix)]:
            del self._senders[sender]

    def check(self, sender: str) -> Verdict:
        """ALLOW, SLOW_DOWN (the first refusal in a window) or DROP."""
        now = time.monotonic()
        since = now - self._window
        kept = self._senders.pop(sender, None)
        times = [NEVER] if kept is None else [NEVER, kept] if isinstance(kept, float) else kept  # [told at, times…]
        first = 1
        while first < len(times) and times[first] <= since:
            first += 1
        if first > 1:
            del times[1:first]
        if len(times) - 1 < self._rate:
            times.append(now)
            verdict = Verdict.ALLOW
        elif times[0] <= since:
            verdict, times[0] = Verdict.SLOW_DOWN, now
        else:
            verdict = Verdict.DROP
        self._forget_quiet(since)
        # one command, never told: its time alone (24 bytes), not a list and a float more (about 110)
        self._senders[sender] = times[1] if len(times) == 2 and times[0] == NEVER else times
        return verdict

    def _forget_quiet(self, since: float) -> None:
        """Drop the least recently checked senders while nothing of theirs counts any more (or there are too many)."""
        senders = self._senders
        while senders and (len(senders) >= MAX_TRACKED_USERS or _last(next(iter(senders.values()))) <= since):
            senders.popitem(last=False)


def _last(kept: float | list[float]) -> float:
    return kept if isinstance(kept, float) else max(kept)
