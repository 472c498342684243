"""The card step of a command's progress, recorded right before a reply's request is written, not earlier."""

from __future__ import annotations

import contextvars
from typing import Any

from bot.progress import Progress

CARD = "card"  # the progress step: a card may have gone out (true), or surely none did (false)


class CardStep:
    """Writes the card step once before the first byte of a reply leaves (a resumed handling then never sends a
    second card), and writes it back to false when DingTalk surely did not take the card (no connection, a server
    error), so that a death while the send is retried still leaves the command to be answered after the restart."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._out = False

    async def sending(self) -> None:
        if not self._out:
            self._out = True
            await self._progress.record(CARD, True)

    async def not_sent(self) -> None:
        if self._out:
            self._out = False
            await self._progress.record(CARD, False)


current: contextvars.ContextVar[CardStep | None] = contextvars.ContextVar("card_step", default=None)


def answered(progress: dict[str, Any]) -> bool:
    """The card of an interrupted handling may have gone out: DingTalk may have it, and two would be worse than none."""
    return bool(progress.get(CARD))
