"""What every handler shares: the Context it gets, and how replies for several calendars combine."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.dingtalk import DingTalkClient
from bot.errors import DingTalkError
from bot.handlers.explain import explain_lookup_error
from bot.models import Command, Message, Reply
from bot.users import ForeignSender, UserDirectory

audit_log = logging.getLogger("bot.audit")


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the message it answers and the platform clients."""

    message: Message
    dingtalk: DingTalkClient
    users: UserDirectory

    async def identify(self) -> str | Reply:
        """The sender's unionId, or the card that explains why the bot cannot act for them."""
        try:
            return await self.users.union_id(self.message)
        except ForeignSender:
            return Reply("foreign_sender")
        except DingTalkError as error:
            return explain_lookup_error(error)

    def audit(self, action: str, union_id: str, reply: Reply) -> None:
        """One line per calendar change asked of DingTalk, so an admin can answer "who unsubscribed from X"."""
        fields = {
            "action": action,
            "staff_id": self.message.sender_staff_id,
            "union_id": union_id,
            "calendar_id": reply.data.get("calendar_id", ""),
            "result": reply.outcome,
            "code": reply.data.get("code", ""),
            "request_id": reply.data.get("request_id", ""),
            "msg_id": self.message.msg_id,
        }
        audit_log.info("calendar change", extra={"fields": fields})


def combine(replies: Sequence[Reply]) -> Reply:
    """One reply for several calendars: each outcome side by side, every follow-up action kept."""
    if len(replies) == 1:
        return replies[0]
    items = [{"outcome": reply.outcome, **reply.data} for reply in replies]
    done = {reply.data["calendar_id"] for reply in replies if reply.outcome == "unsubscribed"}
    offered = (action for reply in replies for action in reply.actions)
    # a name that matched nothing offers the subscribed calendars; not those this same command just left
    actions = tuple(dict.fromkeys(a for a in offered if not (a.command == "unsubscribe" and a.calendar_id in done)))
    return Reply("batch", {"items": items}, actions)


Handler = Callable[[Context, Command], Awaitable[Reply]]
