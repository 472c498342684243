"""`list` / `日历`: the sender's subscribed calendars, each with a one-tap unsubscribe."""

from __future__ import annotations

from bot.errors import DingTalkError
from bot.handlers.base import Context, offer_calendars
from bot.handlers.explain import LIST_SCOPE, explain_calendar_error
from bot.models import Command, Outcome, Reply
from bot.resolve import subscribed


async def list_calendars(context: Context, command: Command) -> Reply:
    union_id = await context.identify()
    try:
        calendars = subscribed(await context.dingtalk.list_calendars(union_id))
    except DingTalkError as error:
        return explain_calendar_error(error, "", LIST_SCOPE)
    if not calendars:
        return Reply(Outcome.NO_CALENDARS)
    context.names.remember(union_id, calendars)
    return offer_calendars(Outcome.CALENDARS, calendars)
