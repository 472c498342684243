"""`unsubscribe <id or name>[, …]` / `取消订阅 …`: resolve each against the sender's calendars and act on it."""

from __future__ import annotations

import asyncio

from bot.commands import calendar_id_problem
from bot.dingtalk import DingTalkClient
from bot.errors import DingTalkError
from bot.handlers.base import Context, change_calendar, each, offer_calendars, refuse, sender_and_targets
from bot.handlers.explain import explain_calendar_error
from bot.models import Action, Calendar, Command, Reply
from bot.resolve import resolve, subscribed

# Texts that can be neither an id nor a name are refused before any call; whitespace may still be part of a name.
REFUSED_LOCALLY = ("dot_segment", "too_long", "bad_characters")
# Answers to an id that end the matter; after any other refusal the text may still be one of the user's names.
FINAL_OUTCOMES = ("unsubscribed", "temporary_problem", "app_lacks_permission")


async def unsubscribe(context: Context, command: Command) -> Reply:
    prepared = await sender_and_targets(context, command, _refused_locally)
    if isinstance(prepared, Reply):
        return prepared
    union_id, targets = prepared
    calendars = SenderCalendars(context.dingtalk, union_id)
    return await each(targets, lambda text: _unsubscribe_one(context, union_id, text, calendars))


def _refused_locally(text: str) -> bool:
    return calendar_id_problem(text) in REFUSED_LOCALLY


class SenderCalendars:
    """The sender's calendars, listed at most once per command and only when a target needs them."""

    def __init__(self, dingtalk: DingTalkClient, union_id: str) -> None:
        self._dingtalk = dingtalk
        self._union_id = union_id
        self._listing: asyncio.Future[list[Calendar]] | None = None

    async def get(self) -> list[Calendar]:
        """Raises DingTalkError only for a temporary failure; any other refusal lists nothing (names then match
        nothing, ids still work)."""
        if self._listing is None:
            self._listing = asyncio.ensure_future(self._list())
        return await asyncio.shield(self._listing)

    async def _list(self) -> list[Calendar]:
        try:
            return await self._dingtalk.list_calendars(self._union_id)
        except DingTalkError as error:
            if error.is_temporary:
                raise
            return []


async def _unsubscribe_one(context: Context, union_id: str, text: str, calendars: SenderCalendars) -> Reply:
    """The documented order: an id of the user's calendars, else one subscribed calendar's name, else the text as an
    id. Trying the text as an id first gives the same result with one call less: an id the user can unsubscribe
    from is one of their calendars, and a refused one still gets its name matched before its error is shown."""
    if _refused_locally(text):
        return refuse(text)
    as_id = (
        None
        if calendar_id_problem(text)
        else await _unsubscribe_calendar(context, union_id, Calendar(text, "", "unknown"))
    )
    if as_id is not None and as_id.outcome in FINAL_OUTCOMES:
        return as_id
    try:
        listed = await calendars.get()
    except DingTalkError as error:
        return as_id or explain_calendar_error(error, "")
    resolution = resolve(text, listed)
    if resolution.matches:
        return offer_calendars("ambiguous", resolution.matches, text=text)
    calendar = resolution.calendar
    if calendar is not None and calendar.id != text:
        return await _unsubscribe_calendar(context, union_id, calendar)
    return as_id or offer_calendars("no_match", subscribed(listed), text=text)


async def _unsubscribe_calendar(context: Context, union_id: str, calendar: Calendar) -> Reply:
    def done(request_id: str) -> Reply:
        data = {"calendar_id": calendar.id, "name": calendar.name, "request_id": request_id}
        return Reply("unsubscribed", data, (Action("resubscribe", calendar.id, calendar.name),))

    call = context.dingtalk.unsubscribe_calendar(union_id, calendar.id)
    return await change_calendar(context, "unsubscribe", union_id, calendar.id, call, done)
