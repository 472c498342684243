"""What the handlers share: their Context, the calendars a command names, one audited change, combined replies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.auth.api import DingTalkApi
from bot.auth.user_tokens import UserTokens
from bot.auth.users import ForeignSender, UserDirectory, is_member
from bot.commands.explain import explain_calendar_error, explain_lookup_error
from bot.commands.names import CalendarNames
from bot.commands.parse import MAX_TARGETS, Target, calendar_id_problem, split_targets
from bot.commands.progress import LANDING_SHARE, Progress, reply_from_json, reply_to_json
from bot.commands.resolve import subscribed
from bot.config import Config
from bot.dingtalk import budget
from bot.dingtalk.errors import FAILURES
from bot.models import Action, Calendar, Command, Message, Outcome, Reply
from bot.stores.audit import AuditRecord, AuditStore, Refusal
from bot.stores.previews import PreviewStore
from bot.telemetry import Stats

audit_log = logging.getLogger("bot.audit")
UNANSWERED = "unanswered"  # the audit's result for a change asked for that got no answer: it may have been made


class CommandError(Exception):
    """The command ends here with this card (a business short-circuit, errbot's CommandError): raised anywhere in a
    handler, answered once by the app."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.outcome)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the message it answers, the platform clients bound to the message's credentials, the
    configuration, the stores and the counters."""

    message: Message
    dingtalk: DingTalkApi
    users: UserDirectory
    names: CalendarNames
    config: Config
    audits: AuditStore
    previews: PreviewStore
    stats: Stats
    user_tokens: UserTokens | None = None  # with BOT_CALENDAR_TOKEN=user only
    progress: Progress = field(default_factory=Progress)

    @property
    def owner(self) -> str:
        """Who sent the message, from platform fields only: their tenant key (organization and staff id)."""
        return self.message.tenant.key

    @property
    def is_admin(self) -> bool:
        """In an ISV app an admin is named with their organization (corpId:staffId): a staff id alone is unique only
        within one organization, and another organization's admin must not see this one's audit."""
        admin = self.owner if self.message.per_organization else self.message.sender_staff_id
        return is_member(self.message) and admin in self.config.admins

    async def identify(self) -> str:
        """The sender's unionId; CommandError with the card that explains why the bot cannot act for them."""
        try:
            return await self.users.union_id(self.message, self.dingtalk)
        except ForeignSender:
            raise CommandError(Reply(Outcome.FOREIGN_SENDER)) from None
        except FAILURES as error:
            raise CommandError(explain_lookup_error(error)) from None

    async def audit(self, action: str, union_id: str, reply: Reply) -> None:
        """One line and one audit record per calendar change asked of DingTalk, so an admin can answer "who
        unsubscribed from X"."""
        result = UNANSWERED if reply.data.get("unanswered") else reply.outcome
        fields = {
            "action": action,
            "staff_id": self.message.sender_staff_id,
            "union_id": union_id,
            "calendar_id": reply.data.get("calendar_id", ""),
            "result": result,
            "code": reply.data.get("code", ""),
            "request_id": reply.data.get("request_id", ""),
            "msg_id": self.message.msg_id,
            "corp_id": self.message.chatbot_corp_id,
        }
        audit_log.info("calendar change", extra={"fields": fields})
        await self._record(
            action,
            union_id,
            str(fields["calendar_id"]),
            reply.data.get("name", ""),
            result,
            str(fields["code"]),
            str(fields["request_id"]),
        )

    async def audit_refusal(self, action: str, subject: str) -> None:
        """An admin command asked for by someone else: logged and recorded like a change."""
        fields = {"action": action, "staff_id": self.message.sender_staff_id, "msg_id": self.message.msg_id}
        audit_log.info("admin command refused", extra={"fields": fields})
        refusal = Refusal(time.time(), action, self.message.sender_staff_id, self.organization, subject, 1)
        try:
            await self.audits.refuse(refusal)
        except Exception:  # the refusal is logged; a store that fails must not hide its card
            audit_log.exception("audit record not stored", extra={"fields": {"msg_id": self.message.msg_id}})

    @property
    def organization(self) -> str:
        """The organization audit records are kept under: the sender's."""
        return self.message.tenant.organization

    async def _record(
        self, action: str, union_id: str, calendar_id: str, name: str, result: str, code: str, request_id: str
    ) -> None:
        message = self.message
        entry = AuditRecord(
            time.time(),
            action,
            message.sender_staff_id,
            self.organization,
            union_id,
            calendar_id,
            name,
            result,
            code,
            request_id,
            message.msg_id,
        )
        try:
            await self.audits.record(entry)
        except Exception:  # the change is made and logged; a store that fails must not hide its card
            audit_log.exception("audit record not stored", extra={"fields": {"msg_id": message.msg_id}})


async def sender_and_targets(
    context: Context, command: Command, refused: Callable[[str], bool]
) -> tuple[str, list[Target]]:
    """The sender's unionId and the calendars the command names (`,` `，` `、` separated); CommandError with the
    card that ends the command before any call: nothing named, too many named, only texts `refused` locally, or a
    sender it cannot act for."""
    targets = split_targets(command.argument, MAX_TARGETS)
    if targets is None:
        raise CommandError(Reply(Outcome.TOO_MANY_CALENDARS, {"limit": MAX_TARGETS}))
    if not targets:
        raise CommandError(Reply(Outcome.CALENDAR_ID_MISSING, {"code": "", "request_id": ""}))
    if all(refused(target.text) for target in targets):
        raise CommandError(combine([refuse(target.text) for target in targets]))
    return await context.identify(), targets


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
    if len(targets) == 1:  # a resumed single target finds its change by "changing" (one journal write fewer)
        return await act(context, targets[0])
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
    followed: bool | None = None,
) -> Reply:
    """Ask DingTalk for one calendar change (`call` answers its request id), explain a refusal, audit either way. If
    an interrupted handling was making this very change, the sender's calendars say whether it happened: then it
    is done, never asked again (DingTalk might refuse a change already made). `followed`: whether the sender's
    listing showed the calendar when the change began (None: not listed then)."""
    began = interrupted_change(context)
    again = began is not None and began.id == calendar.id
    # an id the sender's listing did not show before the change began is missing from the next one too: no evidence
    again = again and not (action == "unsubscribe" and _followed_when_begun(context) is False)
    if again and await _already_changed(context, action, union_id, calendar):
        reply = done("")
    else:
        if began is None or began.id != calendar.id:  # durable before the call, or the call is not made here
            spending = budget.current.get()
            seconds = max(spending.remaining, 0.0) * LANDING_SHARE if spending else 0.0
            await context.progress.record_held("changing", [calendar.id, calendar.name, followed], seconds)
        try:
            request_id = await call()
        except FAILURES as error:
            reply = explain_calendar_error(error, calendar.id, name=calendar.name)
            retried = error.after_unanswered
            if reply.outcome == Outcome.TEMPORARY_PROBLEM and (retried or error.is_unanswered):
                # the request was written and no answer came: DingTalk may have made the change, so the card
                # must not say that nothing changed
                reply = Reply(reply.outcome, {**reply.data, "unanswered": True})
            # "not found / not subscribed / already subscribed" to the call an interrupted handling had begun:
            # DingTalk finished that one after the listing above; unless a new listing says the change is not
            # there (the calendar does not exist at all), it happened and is no error
            # The same when a try of this call got no answer and its retry is refused so: DingTalk did the first
            # (not for an id the sender's listing did not show before the change: no evidence either).
            retried = retried and not (action == "unsubscribe" and followed is False)
            finished_first = (again or retried) and reply.outcome == Outcome.UNKNOWN_CALENDAR
            if finished_first and await _changed(context, action, union_id, calendar) is not False:
                reply = done(reply.data["request_id"])
        else:
            reply = done(request_id)
    await context.audit(action, union_id, reply)
    return reply


def _followed_when_begun(context: Context) -> bool | None:
    began = context.progress.recorded("changing")
    return began[2] if began and len(began) > 2 and isinstance(began[2], bool) else None  # older entries: two


async def _already_changed(context: Context, action: str, union_id: str, calendar: Calendar) -> bool:
    return await _changed(context, action, union_id, calendar) is True  # unknown: ask for the change


async def _changed(context: Context, action: str, union_id: str, calendar: Calendar) -> bool | None:
    """Whether the sender's calendars show the change made; None when they cannot be listed."""
    try:
        listed = await context.dingtalk.list_calendars(union_id)
    except FAILURES:
        return None
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
