"""`resubscribe <id>[, …]` / `重新订阅 …`: the undo of an unsubscribe, offered as a button on every success."""

from __future__ import annotations

from collections.abc import Awaitable

from bot.commands.base import Context, change_calendar, each, refuse, sender_and_targets
from bot.commands.parse import Target, calendar_id_problem
from bot.models import Action, Calendar, Command, Outcome, Reply

# An id is one URL path segment whatever it holds (spaces too, if DingTalk made such an id); these it cannot be.
REFUSED = ("dot_segment", "too_long", "bad_characters")


async def resubscribe(context: Context, command: Command) -> Reply:
    union_id, targets = await sender_and_targets(context, command, _refused)
    # a target is only ever an id here: the same id quoted and unquoted is one calendar, subscribed once
    once = list({target.text: Target(target.text) for target in targets}.values())
    return await each(context, once, lambda context, target: _resubscribe_one(context, union_id, target))


def _refused(text: str) -> bool:
    return calendar_id_problem(text) in REFUSED


async def _resubscribe_one(context: Context, union_id: str, target: Target) -> Reply:
    calendar_id = target.text
    if _refused(calendar_id):
        return refuse(calendar_id)
    name = context.names.name(union_id, calendar_id)  # seen when it was listed; no call just for the card

    def done(request_id: str) -> Reply:
        data = {"calendar_id": calendar_id, "name": name, "request_id": request_id}
        return Reply(Outcome.RESUBSCRIBED, data, (Action("unsubscribe", calendar_id, name),))

    def call() -> Awaitable[str]:
        return context.dingtalk.subscribe_calendar(union_id, calendar_id)

    return await change_calendar(context, "resubscribe", union_id, Calendar(calendar_id, name, ""), call, done)
