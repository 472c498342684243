"""`unsubscribe <id or name>[, …]` / `取消订阅 …`: resolve each against the sender's calendars and act on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.auth.api import DingTalkApi
from bot.commands.base import (
    Context,
    change_calendar,
    each,
    interrupted_change,
    offer_calendars,
    refuse,
    sender_and_targets,
)
from bot.commands.bulk import bulk_target, preview
from bot.commands.explain import LIST_SCOPE, explain_calendar_error
from bot.commands.names import CalendarNames
from bot.commands.parse import Target, calendar_id_problem
from bot.commands.resolve import Resolution, resolve, subscribed
from bot.dingtalk.errors import FAILURES
from bot.models import Action, Calendar, Command, Outcome, Reply

# Texts that can be neither an id nor a name are refused before any call; whitespace may still be part of a name.
REFUSED_LOCALLY = ("dot_segment", "too_long", "bad_characters")
T = TypeVar("T")


async def unsubscribe(context: Context, command: Command) -> Reply:
    bulk = bulk_target(command.argument)
    previewed = await preview(context, bulk) if bulk is not None else None
    if previewed is not None:
        return previewed
    union_id, targets = await sender_and_targets(context, command, _refused_locally)
    calendars = SenderCalendars(context.dingtalk, context.names, union_id, shared=len(targets) > 1)
    return await each(context, targets, lambda context, target: _unsubscribe_one(context, union_id, target, calendars))


async def _shared(work: asyncio.Future[T]) -> T:
    """The outcome of work the command's texts share; it stops with the command (its texts are only ever stopped
    together): never left running on its own past a stop, calling DingTalk after it, its failure never read."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        work.cancel()
        raise


def _refused_locally(text: str) -> bool:
    return calendar_id_problem(text) in REFUSED_LOCALLY


class SenderCalendars:
    """The sender's calendars, listed at most once per command and only when a target needs them (a list of the last
    few seconds will do, unless the bot changed their calendars since); the names seen are remembered for later
    cards."""

    def __init__(self, dingtalk: DingTalkApi, names: CalendarNames, union_id: str, *, shared: bool = True) -> None:
        self._dingtalk = dingtalk
        self._names = names
        self._union_id = union_id
        # Several texts run at once and share the work as tasks; one text (most commands) does its work in its own
        # coroutine, one after the other: no task or shield per call (about 1 % of a command's instructions).
        self._shared = shared
        self._listing: asyncio.Future[list[Calendar]] | None = None
        self._listed: list[Calendar] | None = None  # one text: the listing, once it answered
        self._left: dict[str, asyncio.Future[Reply]] = {}  # calendar id -> its one unsubscribe in this command
        self._replies: dict[str, Reply] = {}  # one text: calendar id -> its unsubscribe's reply

    async def get(self) -> list[Calendar]:
        """Raises the listing's failure, to every target that needs it."""
        if not self._shared:
            if self._listed is None:
                self._listed = await self._list()
            return self._listed
        if self._listing is None:
            self._listing = asyncio.ensure_future(self._list())
        return await _shared(self._listing)

    async def leave(self, calendar_id: str, act: Callable[[], Awaitable[Reply]]) -> Reply:
        """Unsubscribe a calendar once per command, however many of the command's texts (its id, its name in any
        case, quoted or not) mean it: every one of them gets the same outcome."""
        if not self._shared:
            if calendar_id not in self._replies:
                self._replies[calendar_id] = await act()
            return self._replies[calendar_id]
        if calendar_id not in self._left:
            self._left[calendar_id] = asyncio.ensure_future(act())
        return await _shared(self._left[calendar_id])

    async def _list(self) -> list[Calendar]:
        calendars = await self._dingtalk.list_calendars(self._union_id, recent=True)
        self._names.remember(self._union_id, calendars)
        return calendars


async def _unsubscribe_one(context: Context, union_id: str, target: Target, calendars: SenderCalendars) -> Reply:
    if _refused_locally(target.text):
        return refuse(target.text)
    began = interrupted_change(context)
    if began is not None:  # an interrupted handling had resolved the target: the calendar may have gone since
        return await _unsubscribe_calendar(context, union_id, began, calendars)
    if target.exact:
        return await _unsubscribe_exact(context, union_id, target.text, calendars)
    return await _unsubscribe_id_or_name(context, union_id, target.text, calendars)


async def _unsubscribe_exact(context: Context, union_id: str, text: str, calendars: SenderCalendars) -> Reply:
    """A quoted text is an id, as the bot's buttons send it: one call. Only if DingTalk knows no such id is it
    looked for among the sender's calendar names (someone typed a name in quotes)."""
    as_id = await _unsubscribe_calendar(
        context, union_id, Calendar(text, context.names.name(union_id, text), ""), calendars
    )
    if as_id.outcome != Outcome.UNKNOWN_CALENDAR:
        return as_id
    try:
        listed = await calendars.get()
    except FAILURES:
        return as_id
    resolution = resolve(text, listed)
    if resolution.calendar is not None and resolution.calendar.id == text:
        return as_id  # listed, yet DingTalk does not know it: its own answer says most
    return await _act_on(context, union_id, text, resolution, listed, as_id, calendars)


async def _unsubscribe_id_or_name(context: Context, union_id: str, text: str, calendars: SenderCalendars) -> Reply:
    """Any other text may be an id or a name, and names are written by whoever published the calendar: so the
    sender's calendars are listed first, and a text that is one calendar's id and another's name is asked about,
    never guessed. A text no listed calendar has is still tried as an id (DingTalk may say why it is not theirs)."""
    try:
        listed = await calendars.get()
    except FAILURES as error:
        reply = explain_calendar_error(error, "", LIST_SCOPE)
        return Reply(reply.outcome, {**reply.data, "text": text})
    resolution = resolve(text, listed)
    as_id = None
    if resolution.calendar is None and not resolution.matches and calendar_id_problem(text) is None:
        as_id = await _unsubscribe_calendar(context, union_id, Calendar(text, "", ""), calendars, followed=False)
        if as_id.outcome != Outcome.UNKNOWN_CALENDAR:
            return as_id
    return await _act_on(context, union_id, text, resolution, listed, as_id, calendars)


async def _act_on(
    context: Context,
    union_id: str,
    text: str,
    resolution: Resolution,
    listed: list[Calendar],
    refused: Reply | None,
    calendars: SenderCalendars,
) -> Reply:
    """Unsubscribe the one calendar the text means, ask which of several, or show what the sender does follow (with
    the code of DingTalk's refusal of the text as an id, if it was tried as one)."""
    if resolution.matches:
        return offer_calendars(Outcome.AMBIGUOUS, resolution.matches, text=text)
    if resolution.calendar is not None:
        return await _unsubscribe_calendar(context, union_id, resolution.calendar, calendars, followed=True)
    code, request_id = (refused.data["code"], refused.data["request_id"]) if refused else ("", "")
    return offer_calendars(Outcome.NO_MATCH, subscribed(listed), text=text, code=code, request_id=request_id)


async def _unsubscribe_calendar(
    context: Context, union_id: str, calendar: Calendar, calendars: SenderCalendars, followed: bool | None = None
) -> Reply:
    def done(request_id: str) -> Reply:
        data = {"calendar_id": calendar.id, "name": calendar.name, "request_id": request_id}
        return Reply(Outcome.UNSUBSCRIBED, data, (Action("resubscribe", calendar.id, calendar.name),))

    def call() -> Awaitable[str]:
        return context.dingtalk.unsubscribe_calendar(union_id, calendar.id)

    def change() -> Awaitable[Reply]:
        return change_calendar(context, "unsubscribe", union_id, calendar, call, done, followed)

    return await calendars.leave(calendar.id, change)
