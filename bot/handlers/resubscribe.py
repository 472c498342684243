"""`resubscribe <id>[, …]` / `重新订阅 …`: the undo of an unsubscribe, offered as a button on every success."""

from __future__ import annotations

from bot.commands import calendar_id_problem
from bot.handlers.base import Context, change_calendar, each, refuse, sender_and_targets
from bot.models import Action, Command, Reply


async def resubscribe(context: Context, command: Command) -> Reply:
    prepared = await sender_and_targets(context, command, lambda text: calendar_id_problem(text) is not None)
    if isinstance(prepared, Reply):
        return prepared
    union_id, targets = prepared
    return await each(targets, lambda calendar_id: _resubscribe_one(context, union_id, calendar_id))


async def _resubscribe_one(context: Context, union_id: str, calendar_id: str) -> Reply:
    if calendar_id_problem(calendar_id):
        return refuse(calendar_id)

    def done(request_id: str) -> Reply:
        data = {"calendar_id": calendar_id, "request_id": request_id}
        return Reply("resubscribed", data, (Action("unsubscribe", calendar_id),))

    call = context.dingtalk.subscribe_calendar(union_id, calendar_id)
    return await change_calendar(context, "resubscribe", union_id, calendar_id, call, done)
