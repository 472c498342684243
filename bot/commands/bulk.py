"""Bulk unsubscribe: `unsubscribe all` or a wildcard pattern previews the set; Confirm acts on exactly that set,
once, for the asker only; one Undo resubscribes it."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import Awaitable

from bot.commands.base import CommandError, Context, change_calendar
from bot.commands.explain import LIST_SCOPE, explain_calendar_error
from bot.commands.parse import split_targets
from bot.commands.resolve import subscribed
from bot.commands.wildcards import MAX_PATTERN_LENGTH, is_pattern, select
from bot.dingtalk.errors import FAILURES
from bot.models import Action, Calendar, Command, Outcome, Reply

ALL_WORDS = frozenset({"all", "全部"})
MAX_BULK = 100  # calendars one confirmation acts on; a larger match previews (and acts on) the first 100 by name
UNDO_SECONDS = 86_400.0  # how long the Undo button of a bulk unsubscribe works
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
CONFIRM, UNDO = "confirm", "undo"


def bulk_target(argument: str) -> str | None:
    """What an unsubscribe argument asks for in bulk: its one target when that is `all` / `全部` (unquoted: in
    quotes it is a calendar's name or id) or holds a wildcard; None when it names calendars one by one."""
    if not is_pattern(argument) and argument.strip().casefold() not in ALL_WORDS:
        return None  # most commands: no second parse
    targets = split_targets(argument)
    if not targets or len(targets) != 1:
        return None
    target = targets[0]
    if len(target.text) > MAX_PATTERN_LENGTH:
        return None  # refused as too long to be an id or a name, like any other text
    if not target.exact and target.text.casefold() in ALL_WORDS:
        return target.text
    return target.text if is_pattern(target.text) else None


async def preview(context: Context, target: str) -> Reply | None:
    """The calendars the target selects and one Confirm button; nothing changes yet. None when a pattern selects
    none of the sender's calendars: then it is read as one id or name, as before wildcards (an id may hold `?`)."""
    everything = not is_pattern(target)
    union_id = await context.identify()
    try:
        listed = subscribed(await context.dingtalk.list_calendars(union_id))
    except FAILURES as error:
        return explain_calendar_error(error, "", LIST_SCOPE)
    context.names.remember(union_id, listed)
    if everything and not listed:
        return Reply(Outcome.NO_CALENDARS)
    selected = listed if everything else select(target, listed)
    if not selected:
        return None
    chosen = sorted(selected, key=lambda calendar: (calendar.name.casefold(), calendar.id))[:MAX_BULK]
    token = secrets.token_urlsafe(16)
    pending = {"union_id": union_id, "calendars": [[calendar.id, calendar.name] for calendar in chosen]}
    await context.previews.save(CONFIRM, context.owner, token, pending, context.config.confirm_seconds)
    data = {
        "pattern": "" if everything else target,
        "count": len(chosen),
        "matched": len(selected),
        "calendars": [{"id": calendar.id, "name": calendar.name} for calendar in chosen],
        "minutes": max(1, round(context.config.confirm_seconds / 60)),
    }
    return Reply(Outcome.BULK_PREVIEW, data, (Action(CONFIRM, token, str(len(chosen))),))


async def confirm(context: Context, command: Command) -> Reply:
    """Unsubscribe exactly the previewed set, if this sender previewed it, within its time, the first time."""
    union_id, calendars = await _claim(context, CONFIRM, command)
    replies = await asyncio.gather(*(_change(context, "unsubscribe", union_id, calendar) for calendar in calendars))
    done = [
        calendar for calendar, reply in zip(calendars, replies, strict=True) if reply.outcome == Outcome.UNSUBSCRIBED
    ]
    actions: tuple[Action, ...] = ()
    if done:
        token = secrets.token_urlsafe(16)
        undo = {"union_id": union_id, "calendars": [[calendar.id, calendar.name] for calendar in done]}
        await context.previews.save(UNDO, context.owner, token, undo, UNDO_SECONDS)
        actions = (Action(UNDO, token, str(len(done))),)
    return Reply(Outcome.BATCH, {"items": [{"outcome": r.outcome, **r.data} for r in replies]}, actions)


async def undo(context: Context, command: Command) -> Reply:
    """Resubscribe every calendar a confirmed bulk unsubscribe left, once."""
    union_id, calendars = await _claim(context, UNDO, command)
    replies = await asyncio.gather(*(_change(context, "resubscribe", union_id, calendar) for calendar in calendars))
    return Reply(Outcome.BATCH, {"items": [{"outcome": r.outcome, **r.data} for r in replies]})


async def _claim(context: Context, kind: str, command: Command) -> tuple[str, list[Calendar]]:
    """The pending set this sender may act on with the token the button sent, taken away so no press acts twice;
    CommandError when there is none."""
    await context.identify()
    targets = split_targets(command.argument, 1)
    token = targets[0].text if targets else ""
    # claimed by a handling that was interrupted: the set is in its progress, the preview itself already gone
    pending = context.progress.recorded("claimed")
    if pending is None and _TOKEN.fullmatch(token):
        pending = await context.previews.claim(kind, context.owner, token)
        if pending is not None:
            await context.progress.record("claimed", pending)
    if pending is None:
        raise CommandError(Reply(Outcome.BULK_EXPIRED, {"kind": kind}))
    return str(pending["union_id"]), [Calendar(str(i), str(n), "subscribed") for i, n in pending["calendars"]]


async def _change(context: Context, action: str, union_id: str, calendar: Calendar) -> Reply:
    # each calendar's steps kept apart, so a resumed confirm knows which change was under way
    context = dataclasses.replace(context, progress=context.progress.scoped(calendar.id))
    if action == "unsubscribe":
        outcome, change = Outcome.UNSUBSCRIBED, context.dingtalk.unsubscribe_calendar
    else:
        outcome, change = Outcome.RESUBSCRIBED, context.dingtalk.subscribe_calendar

    def call() -> Awaitable[str]:
        return change(union_id, calendar.id)

    def done(request_id: str) -> Reply:
        return Reply(outcome, {"calendar_id": calendar.id, "name": calendar.name, "request_id": request_id})

    return await change_calendar(context, action, union_id, calendar, call, done)
