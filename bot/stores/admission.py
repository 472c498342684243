"""Admission: is this message new (not claimed by another dyno), and may its sender have another command now?"""

from __future__ import annotations

from typing import Protocol

from bot.models import Verdict
from bot.stores.dedupe import REMEMBER_SECONDS, RecentIds
from bot.stores.ratelimit import UserRateLimiter


class Admission(Protocol):
    async def admit(self, msg_id: str, sender: str) -> Verdict:
        """Claim the message, then count it against its sender's limit; TAKEN for a repeat, which is not counted."""
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

    def forget(self, prefix: str) -> None:
        self._senders.forget(prefix)
