"""The intake: each message written down before its ACK, then queued; crossed out once answered; what an interrupted
process left behind queued again, oldest first, with the progress it had made."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

from bot.commands.progress import Progress
from bot.config import Config
from bot.models import Message
from bot.stores.journal import MAX_ATTEMPTS, Entry, Journal, SqliteJournal
from bot.stores.redis.journal import RedisJournal
from bot.stores.redis.limits import connect
from bot.stream.outgoing import CardStep, answered

log = logging.getLogger("bot.intake")


def build_journal(config: Config) -> Journal:
    """The Redis Stream when REDIS_URL is set, else SQLite in BOT_STATE_DIR."""
    remember = config.dedupe_seconds
    if not config.redis_url:
        if config.dyno:
            log.warning(
                "state kept on the dyno's own disk, which does not outlive the dyno: set REDIS_URL so that it "
                "survives a restart or deploy",
                extra={"fields": {"dyno": config.dyno, "lost_at_restart": _kept_on_disk(config)}},
            )
        return SqliteJournal(Path(config.state_dir) / "journal.sqlite3", remember)
    client = connect(config.redis_url, config.redis_tls_verify)
    # Never DYNO alone: a restarted dyno starts while the old process still finishes its work under that name
    consumer = f"{config.dyno or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
    prefix = f"calbot:{config.client_id}:"
    return RedisJournal(client, prefix, consumer, remember, config.journal_claim_seconds)


class Intake:
    """Between the transport and the inbox: accept() is what the transport awaits before its ACK."""

    def __init__(self, journal: Journal, queue: Callable[[Message], None]) -> None:
        self.journal = journal
        self._queue = queue
        self._resumed: dict[str, Entry] = {}  # msgId -> what an interrupted handling of it left
        self._finishing: set[asyncio.Task[None]] = set()
        self.repeats = 0

    async def open(self) -> None:
        """Queue what the last run left unfinished, and from now on what other dynos leave behind."""
        unfinished = await self.journal.open()
        if unfinished:
            log.warning("resuming unfinished commands", extra={"fields": {"count": len(unfinished)}})
            self.resume(unfinished)
        self.journal.resume_elsewhere(self.resume)

    async def accept(self, message: Message) -> None:
        """Write the message down (the transport ACKs it after this), then queue it; a repeat is dropped."""
        if not await self.journal.add(message):
            self.repeats += 1
            log.info("duplicate message dropped", extra={"fields": {"msg_id": message.msg_id}})
            return
        self._queue(message)

    def resume(self, entries: list[Entry]) -> None:
        for entry in entries:
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
    def answered(entry: Entry | None) -> bool:
        """The card of the handling it resumes was on its way when the process died: DingTalk most likely has it,
        and a second card would be worse than none."""
        return entry is not None and answered(entry.progress)

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


def _kept_on_disk(config: Config) -> list[str]:
    """What a Heroku dyno loses at its next restart when the bot has no Redis: said once, in one line."""
    kept = ["commands in flight (the journal)", "bulk previews", "audit records"]
    if config.user_tokens:
        kept.append("users' connected accounts")
    if config.is_isv:
        kept.append("the suite ticket")
    return kept
