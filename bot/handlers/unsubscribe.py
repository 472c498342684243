"""`unsubscribe <id or name>[, …]` / `取消订阅 …`: resolve each against the sender's calendars and act on it."""

from __future__ import annotations

import asyncio

from bot.commands import calendar_id_problem, split_targets
from bot.dingtalk import DingTalkError
from bot.handlers.base import Context, combine
from bot.handlers.explain import explain_calendar_error
from bot.models import Action, Calendar, Command, Reply
from bot.resolve import resolve, subscribed

# Texts that can be neither an id nor a name are refused before any call; whitespace may still be part of a name.
REFUSED_LOCALLY = ("dot_segment", "too_long", "bad_characters")


async def unsubscribe(context: Context, command: Command) -> Reply:
    targets = split_targets(command.argument)
    if not targets:
        return Reply("calendar_id_missing", {"code": "", "request_id": ""})
    if all(calendar_id_problem(target) in REFUSED_LOCALLY for target in targets):
        return combine([refuse(target) for target in targets])
    union_id = await context.identify()
    if isinstance(union_id, Reply):
        return union_id
    try:
        calendars = await context.dingtalk.list_calendars(union_id)
    except DingTalkError as error:
        if error.is_temporary:
            return explain_calendar_error(error, "")
        calendars = []  # without the list, ids still work; names then match nothing
    replies = await asyncio.gather(*(_unsubscribe_one(context, union_id, target, calendars) for target in targets))
    return combine(replies)


def refuse(text: str) -> Reply:
    return Reply("invalid_calendar_id", {"calendar_id": text, "problem": calendar_id_problem(text)})


async def _unsubscribe_one(context: Context, union_id: str, text: str, calendars: list[Calendar]) -> Reply:
    if calendar_id_problem(text) in REFUSED_LOCALLY:
        return refuse(text)
    resolution = resolve(text, calendars)
    if resolution.matches:
        return _choices("ambiguous", text, resolution.matches)
    calendar = resolution.calendar
    if calendar is None:
        return _choices("no_match", text, subscribed(calendars))
    try:
        request_id = await context.dingtalk.unsubscribe_calendar(union_id, calendar.id)
    except DingTalkError as error:
        reply = explain_calendar_error(error, calendar.id)
    else:
        data = {"calendar_id": calendar.id, "name": calendar.name, "request_id": request_id}
        reply = Reply("unsubscribed", data, (Action("resubscribe", calendar.id, calendar.name),))
    context.audit("unsubscribe", union_id, reply)
    return reply


def _choices(outcome: str, text: str, calendars: tuple[Calendar, ...] | list[Calendar]) -> Reply:
    """No action: the calendars the user may have meant, each with a one-tap unsubscribe."""
    items = [{"id": calendar.id, "name": calendar.name} for calendar in calendars]
    actions = tuple(Action("unsubscribe", calendar.id, calendar.name) for calendar in calendars)
    return Reply(outcome, {"text": text, "calendars": items}, actions)
