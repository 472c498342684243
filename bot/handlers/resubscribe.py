"""`resubscribe <id>[, …]` / `重新订阅 …`: the undo of an unsubscribe, offered as a button on every success."""

from __future__ import annotations

import asyncio

from bot.commands import calendar_id_problem, split_targets
from bot.errors import DingTalkError
from bot.handlers.base import Context, combine
from bot.handlers.explain import explain_calendar_error
from bot.handlers.unsubscribe import refuse
from bot.models import Action, Command, Reply


async def resubscribe(context: Context, command: Command) -> Reply:
    targets = split_targets(command.argument)
    if not targets:
        return Reply("calendar_id_missing", {"code": "", "request_id": ""})
    if all(calendar_id_problem(target) for target in targets):
        return combine([refuse(target) for target in targets])
    union_id = await context.identify()
    if isinstance(union_id, Reply):
        return union_id
    return combine(await asyncio.gather(*(_resubscribe_one(context, union_id, target) for target in targets)))


async def _resubscribe_one(context: Context, union_id: str, calendar_id: str) -> Reply:
    if calendar_id_problem(calendar_id):
        return refuse(calendar_id)
    try:
        request_id = await context.dingtalk.subscribe_calendar(union_id, calendar_id)
    except DingTalkError as error:
        reply = explain_calendar_error(error, calendar_id)
    else:
        reply = Reply(
            "resubscribed",
            {"calendar_id": calendar_id, "request_id": request_id},
            (Action("unsubscribe", calendar_id),),
        )
    context.audit("resubscribe", union_id, reply)
    return reply
