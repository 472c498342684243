"""The card step of a command's progress, recorded right before a reply's request is written, not earlier (the
client calls it through bot/dingtalk/before_send.py: the stream's intake sets one per reply)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands.progress import LANDING_SHARE, Progress
from bot.dingtalk import budget
from bot.dingtalk.errors import CardHeldBack
from bot.stores.journal import CARD

Mark = Callable[[float], Awaitable[bool]]  # the journal's mark_card for one message


class CardStep:
    """Writes the card step once before the first byte of a reply leaves (a resumed handling then never sends a
    second card), and writes it back to false when DingTalk surely did not take the card (no connection, a server
    error), so that a death while the send is retried still leaves the command to be answered after the restart."""

    def __init__(self, progress: Progress, mark: Mark) -> None:
        self._progress = progress
        self._mark = mark
        self._out = False
        self._held_back = False

    async def sending(self) -> None:
        """Raises CardHeldBack when the step cannot be recorded within half the reply's time left (Redis away), or
        another dyno has taken the message over: a card sent then could be sent twice."""
        if self._held_back:
            raise CardHeldBack
        if not self._out:
            spending = budget.current.get()
            seconds = max(spending.remaining, 0.0) * LANDING_SHARE if spending else 0.0
            if not await self._mark(seconds):
                self._held_back = True
                raise CardHeldBack
            self._out = True

    async def not_sent(self) -> None:
        if self._out:
            self._out = False
            await self._progress.record(CARD, False)


def answered(progress: dict[str, Any]) -> bool:
    """The card of an interrupted handling may have gone out: DingTalk may have it, and two would be worse than none."""
    return bool(progress.get(CARD))
