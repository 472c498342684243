"""The intake: each message written down before its ACK, then queued; what an interrupted process left, resumed."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from bot.commands.progress import Progress
from bot.models import Message
from bot.stores.journal import MAX_ATTEMPTS, Entry, Journal
from bot.stream.outgoing import CardStep
from bot.stream.repeats import Repeats

log = logging.getLogger("bot.intake")


class Intake:
    """Between the transport and the inbox: accept() is what the transport awaits before its ACK."""

    def __init__(self, journal: Journal, repeats: Repeats) -> None:
        self.journal = journal
        self._repeats = repeats
        self._queue: Callable[[Message], None] = _not_open
        self._resumed: dict[str, Entry] = {}  # msgId -> what an interrupted handling of it left
        self._finishing: set[asyncio.Task[None]] = set()

    async def open(self, queue: Callable[[Message], None]) -> None:
        """Queue what the last run left unfinished, and from now on what arrives and what other dynos leave behind."""
        self._queue = queue
        unfinished = await self.journal.open()
        if unfinished:
            log.warning("resuming unfinished commands", extra={"fields": {"count": len(unfinished)}})
            self.resume(unfinished)
        self.journal.resume_elsewhere(self.resume)

    async def accept(self, message: Message) -> None:
        """Write the message down (the transport ACKs it after this), then queue it; a repeat is dropped."""
        await self.add(message)

    async def add(self, message: Message) -> bool:
        """accept(), saying whether the message was queued (False: a repeat)."""
        if await self._repeats.delivered(message):
            self._queue(message)
            return True
        return False

    def resume(self, entries: list[Entry]) -> None:
        for entry in entries:
            if self._repeats.resumed(entry.message):
                self._resumed[entry.message.key] = entry
                self._queue(entry.message)

    def take(self, message: Message) -> tuple[Progress, Entry | None]:
        """The progress of this message's handling, and the entry it resumes, if any."""
        entry = self._resumed.pop(message.key, None)
        return Progress(
            message.key, entry.progress if entry else {}, self.journal.record, land=self.journal.record_held
        ), entry

    def card_step(self, msg_id: str, progress: Progress) -> CardStep:
        return CardStep(progress, functools.partial(self.journal.mark_card, msg_id))

    @staticmethod
    def poisoned(entry: Entry | None) -> bool:
        """Its handling began MAX_ATTEMPTS times and never finished: it is parked, not tried again."""
        return entry is not None and entry.attempts >= MAX_ATTEMPTS

    async def finish(self, msg_id: str) -> None:
        await self.journal.finish(msg_id)

    def release(self, msg_id: str) -> None:
        """Its card could not be sent here without risking a second one: left for a later resumption."""
        self.journal.release(msg_id)

    def finish_later(self, msg_id: str) -> None:
        """Cross out a message answered by no card (refused while the bot is flooded)."""
        finishing = asyncio.create_task(self.journal.finish(msg_id))
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)

    async def close(self) -> None:
        await asyncio.gather(*self._finishing, return_exceptions=True)
        await self.journal.close()


def _not_open(message: Message) -> None:
    raise RuntimeError("the intake is not open")
