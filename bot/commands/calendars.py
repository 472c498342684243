"""`list` / `日历`: the sender's subscribed calendars, each with a one-tap unsubscribe."""

from __future__ import annotations

from bot.commands.base import Context, offer_calendars
from bot.commands.explain import LIST_SCOPE, explain_calendar_error
from bot.commands.resolve import subscribed
from bot.dingtalk.errors import FAILURES
from bot.models import Command, Outcome, Reply


async def list_calendars(context: Context, command: Command) -> Reply:
    union_id = await context.identify()
    try:
        calendars = subscribed(await context.dingtalk.list_calendars(union_id))
    except FAILURES as error:
        return explain_calendar_error(error, "", LIST_SCOPE)
    if not calendars:
        return Reply(Outcome.NO_CALENDARS)
    context.names.remember(union_id, calendars)
    return offer_calendars(Outcome.CALENDARS, calendars)
