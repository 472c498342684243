"""What the handlers share: their Context, the calendars a command names, one audited change, combined replies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.commands import MAX_TARGETS, Target, calendar_id_problem, split_targets
from bot.dingtalk import DingTalkClient
from bot.errors import DingTalkError
from bot.handlers.explain import explain_calendar_error, explain_lookup_error
from bot.models import Action, Calendar, Command, Message, Outcome, Reply
from bot.names import CalendarNames
from bot.progress import Progress, reply_from_json, reply_to_json
from bot.resolve import subscribed
from bot.users import ForeignSender, UserDirectory

audit_log = logging.getLogger("bot.audit")


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the message it answers and the platform clients."""

    message: Message
    dingtalk: DingTalkClient
    users: UserDirectory
    names: CalendarNames
    progress: Progress = field(default_factory=Progress)

    async def identify(self) -> str | Reply:
        """The sender's unionId, or the card that explains why the bot cannot act for them."""
        try:
            return await self.users.union_id(self.message)
        except ForeignSender:
            return Reply(Outcome.FOREIGN_SENDER)
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


async def sender_and_targets(
    context: Context, command: Command, refused: Callable[[str], bool]
) -> tuple[str, list[Target]] | Reply:
    """The sender's unionId and the calendars the command names (`,` `，` `、` separated), or the card that ends
    the command before any call: nothing named, too many named, only texts `refused` locally, or a sender it cannot
    act for."""
    targets = split_targets(command.argument, MAX_TARGETS)
    if targets is None:
        return Reply(Outcome.TOO_MANY_CALENDARS, {"limit": MAX_TARGETS})
    if not targets:
        return Reply(Outcome.CALENDAR_ID_MISSING, {"code": "", "request_id": ""})
    if all(refused(target.text) for target in targets):
        return combine([refuse(target.text) for target in targets])
    union_id = await context.identify()
    if isinstance(union_id, Reply):
        return union_id
    return union_id, targets


def offer_calendars(outcome: Outcome, calendars: Sequence[Calendar], **data: object) -> Reply:
    """A card listing calendars, each with a one-tap unsubscribe."""
    items = [{"id": calendar.id, "name": calendar.name} for calendar in calendars]
    actions = tuple(Action("unsubscribe", calendar.id, calendar.name) for calendar in calendars)
    return Reply(outcome, {**data, "calendars": items}, actions)


def refuse(text: str) -> Reply:
    return Reply(Outcome.INVALID_CALENDAR_ID, {"calendar_id": text, "problem": calendar_id_problem(text)})


async def each(context: Context, targets: list[Target], act: Callable[[Context, Target], Awaitable[Reply]]) -> Reply:
    """Act on every target at once, each with its own progress (a target an interrupted handling finished keeps its
    reply); one reply for all of them."""
    if len(targets) == 1:
        return await _once(context, targets[0], act)
    return combine(await asyncio.gather(*(_once(context, target, act) for target in targets)))


async def _once(context: Context, target: Target, act: Callable[[Context, Target], Awaitable[Reply]]) -> Reply:
    progress = context.progress.scoped(f"{int(target.exact)}{target.text}")
    recorded = progress.recorded("reply")
    if recorded is not None:
        return reply_from_json(recorded)
    reply = await act(dataclasses.replace(context, progress=progress), target)
    await progress.record("reply", reply_to_json(reply))
    return reply


def interrupted_change(context: Context) -> Calendar | None:
    """The calendar an interrupted handling of this target was changing when it stopped, if any."""
    began = context.progress.recorded("changing")
    return Calendar(began[0], began[1], "") if began else None


async def change_calendar(
    context: Context,
    action: str,
    union_id: str,
    calendar: Calendar,
    call: Callable[[], Awaitable[str]],
    done: Callable[[str], Reply],
) -> Reply:
    """Ask DingTalk for one calendar change (`call` answers its request id), explain a refusal, audit either way. If
    an interrupted handling was making this very change, the sender's calendars say whether it happened: then it
    is done, never asked again (DingTalk might refuse a change already made)."""
    began = interrupted_change(context)
    if began is not None and began.id == calendar.id and await _already_changed(context, action, union_id, calendar):
        reply = done("")
    else:
        await context.progress.record("changing", [calendar.id, calendar.name])
        try:
            request_id = await call()
        except DingTalkError as error:
            reply = explain_calendar_error(error, calendar.id, name=calendar.name)
        else:
            reply = done(request_id)
    context.audit(action, union_id, reply)
    return reply


async def _already_changed(context: Context, action: str, union_id: str, calendar: Calendar) -> bool:
    try:
        listed = await context.dingtalk.list_calendars(union_id)
    except DingTalkError:
        return False  # unknown: ask for the change
    followed = any(listed_calendar.id == calendar.id for listed_calendar in subscribed(listed))
    return followed if action == "resubscribe" else not followed


def combine(replies: Sequence[Reply]) -> Reply:
    """One reply for several calendars: each outcome side by side, every follow-up action kept."""
    if len(replies) == 1:
        return replies[0]
    items = [{"outcome": reply.outcome, **reply.data} for reply in replies]
    done = {reply.data["calendar_id"] for reply in replies if reply.outcome == Outcome.UNSUBSCRIBED}
    offered = (action for reply in replies for action in reply.actions)
    # a name that matched nothing offers the subscribed calendars; not those this same command just left
    actions = tuple(dict.fromkeys(a for a in offered if not (a.command == "unsubscribe" and a.calendar_id in done)))
    return Reply(Outcome.BATCH, {"items": items}, actions)


Handler = Callable[[Context, Command], Awaitable[Reply]]
