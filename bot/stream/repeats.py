"""The one answer to "is this a repeat?", at each point where a copy of a message can show up."""

from __future__ import annotations

import logging

from bot.models import Message, Verdict
from bot.stores.admission import Admission
from bot.stores.dedupe import REMEMBER_SECONDS, RecentIds
from bot.stores.journal import Entry, Journal
from bot.stream.outgoing import answered

log = logging.getLogger("bot.repeats")


class Repeats:
    """Three records know a message was seen, each for a case the others miss: the journal (before the ACK; across
    restarts, and across dynos with Redis), this process's recent ids (while the journal cannot be written), and
    admission's claim (across dynos, in the same Redis call as the sender's rate). `dropped` counts every repeat."""

    def __init__(self, journal: Journal, admission: Admission, remember_seconds: float = REMEMBER_SECONDS) -> None:
        self._journal = journal
        self._admission = admission
        self._here = RecentIds(remember_seconds)
        self.dropped = 0

    async def delivered(self, message: Message) -> bool:
        """A delivery, written down before its ACK: False for a repeat, which is dropped."""
        if await self._journal.add(message):
            return self.resumed(message)
        self._drop("duplicate message dropped", {"msg_id": message.msg_id})
        return False

    def resumed(self, message: Message) -> bool:
        """A message about to be queued (delivered, or left by an interrupted handling): False if this process
        queued it within the dedupe window."""
        if self._here.claim(message.key):
            return True
        self._drop("duplicate message dropped", {"msg_id": message.msg_id})
        return False

    async def admit(self, message: Message, sender: str, resumed: Entry | None) -> Verdict:
        """At the message's turn: TAKEN for a repeat (claimed by another dyno, or resumed with its card already on its
        way, which DingTalk most likely has: a second card would be worse than none), else the sender's verdict."""
        if resumed is not None:  # admitted (and counted against its sender) by the handling it resumes
            if not answered(resumed.progress):
                return Verdict.ALLOW
            log.warning("resumed message already answered", extra={"fields": {"msg_id": message.msg_id}})
            return Verdict.TAKEN
        verdict = await self._admission.admit(message.key, sender)
        if verdict == Verdict.TAKEN:
            fields: dict[str, object] = {"msg_id": message.msg_id, "conversation": _conversation(message)}
            if message.per_organization:
                fields["corp_id"] = message.chatbot_corp_id
            self._drop("message taken by another dyno", fields)
        return verdict

    def _drop(self, event: str, fields: dict[str, object]) -> None:
        self.dropped += 1
        log.info(event, extra={"fields": fields})


def _conversation(message: Message) -> str:
    return "group" if message.is_group else "1:1"
