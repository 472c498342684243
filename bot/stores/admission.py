"""Admission: is this message new (not claimed by another dyno), and may its sender have another command now?"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Protocol

from bot.models import Verdict
from bot.stores.dedupe import REMEMBER_SECONDS, RecentIds
from bot.stores.keys import of_organization

MAX_TRACKED_USERS = 100_000
NEVER = -math.inf  # "told at" of a sender never told to slow down


class Admission(Protocol):
    async def admit(self, msg_id: str, sender: str) -> Verdict:
        """Claim the message, then count it against its sender's limit; TAKEN for a repeat, which is not counted."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Drop the windows of the organization's senders (sender keys are tenant keys); how many."""
        ...


class MemoryAdmission:
    """Claims and per-sender windows of this process (one dyno)."""

    def __init__(self, user_rate: int, user_window: float = 60.0, dedupe_seconds: float = REMEMBER_SECONDS) -> None:
        self._claimed = RecentIds(dedupe_seconds)
        self._senders = UserRateLimiter(user_rate, user_window)

    async def admit(self, msg_id: str, sender: str) -> Verdict:
        if not self._claimed.claim(msg_id):
            return Verdict.TAKEN
        return self._senders.check(sender)

    async def forget_organization(self, corp_id: str) -> int:
        return self._senders.forget(of_organization(corp_id))


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

    def forget(self, prefix: str) -> int:
        """Drop the windows of the senders whose key starts with `prefix` (an organization that removed the app)."""
        gone = [sender for sender in self._senders if sender.startswith(prefix)]
        for sender in gone:
            del self._senders[sender]
        return len(gone)

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
