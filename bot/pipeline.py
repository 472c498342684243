"""The message pipeline: admit → parse → handle → render → reply, for one message; the busy path beside it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from bot.auth.api import DingTalkApi
from bot.auth.connect import Connector, with_connect_button
from bot.auth.credentials import Authorizer
from bot.auth.user_tokens import ConsentNeeded, UserTokens
from bot.auth.users import UserDirectory
from bot.cards.delivery import deliver, deliver_privately
from bot.cards.presses import PressDesk
from bot.cards.render import render as render_card
from bot.commands.names import CalendarNames
from bot.commands.parse import parse
from bot.commands.progress import Progress, StepHeldBack
from bot.commands.routes import HANDLERS, CommandError, Context
from bot.config import Config
from bot.dingtalk import before_send, budget
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.errors import FAILURES, CardHeldBack, described
from bot.dingtalk.recent_calendars import RecentCalendars
from bot.models import ONE_TO_ONE, Command, Message, Outcome, Reply, Verdict
from bot.stores.audit import AuditStore
from bot.stores.dedupe import RecentIds
from bot.stores.journal import Entry
from bot.stores.languages import LastLanguages
from bot.stores.previews import PreviewStore
from bot.stream.intake import Intake
from bot.stream.repeats import Repeats
from bot.telemetry import Telemetry

log = logging.getLogger("bot.pipeline")
MAX_BUSY_REPLIES = 32  # "busy" cards being sent at once; a flood beyond the inbox must not grow a task per message
MAX_BUSY_TOLD = 20_000  # senders remembered as told "busy" within the window


class Pipeline:
    """Answers each Message with one card: what the inbox's workers run."""

    def __init__(
        self,
        config: Config,
        dingtalk: DingTalkClient,
        authorizer: Authorizer,
        intake: Intake,
        repeats: Repeats,
        telemetry: Telemetry,
        *,
        audits: AuditStore,
        previews: PreviewStore,
        languages: LastLanguages,
        users: UserDirectory,
        user_tokens: UserTokens | None = None,
        connector: Connector | None = None,
        presses: PressDesk | None = None,
    ) -> None:
        self.config = config
        self.dingtalk = dingtalk
        self.authorizer = authorizer
        self.intake = intake
        self.repeats = repeats
        self.telemetry = telemetry
        self.audits = audits
        self.previews = previews
        self.languages = languages
        self.users = users
        self.user_tokens = user_tokens
        self.connector = connector
        self.presses = presses  # BOT_CARD_TEMPLATE_ID set: interactive cards, answered in place
        self.names = CalendarNames()
        self.calendar_lists = RecentCalendars()

    async def handle(self, message: Message) -> None:
        """Admit, parse, run the command, send its card; then cross the message out (or leave it to be resumed)."""
        started = time.perf_counter()
        progress, resumed = self.intake.take(message)
        sender = message.sender_key  # built once: the sender's limit and language share one string, not a copy each
        verdict = await self.repeats.admit(message, sender, resumed)
        fields = self._fields(message)
        if verdict == Verdict.TAKEN or verdict == Verdict.DROP:
            await self._not_handled(message, verdict, fields)
            return
        command = parse(message.text, self.languages.of(sender, self.config.locale))
        dingtalk = await self.api_for(message)
        if command.understood:
            self.languages.remember(sender, command.locale)
        with budget.spending(self.config.command_timeout) as work:
            reply = await self._decide(dingtalk, message, command, progress, resumed, verdict)
        fields["command"] = command.name
        if reply is None:  # nothing asked of DingTalk without its step: whoever resumes it asks
            log.warning("command held back: its step cannot be recorded", extra={"fields": fields})
            self.intake.release(message.key)
            return
        sending = await self._reply(dingtalk, message, reply, command.locale, progress, fields)
        fields["resumed"] = resumed is not None
        self._handled(reply, fields, started, work, sending)

    async def api_for(self, message: Message) -> DingTalkApi:
        """The DingTalk API bound to the credentials that answer this message."""
        return DingTalkApi(self.dingtalk, await self.authorizer.authorize(message), self.calendar_lists)

    async def send(
        self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str, fields: dict[str, object]
    ) -> bool:
        """Render and send the card; `fields` gets its route ("failed" with the reason when it could not be
        delivered). True when the card was held back: it is left to whoever resumes the command."""
        try:
            fields["route"] = await self._deliver(dingtalk, message, reply, locale)
        except CardHeldBack as held:
            fields.update(route="failed", reply_code=held.code)
            problem = {"msg_id": message.msg_id, "reply_code": held.code, "status": 0}
            log.warning(
                "card held back: its step cannot be recorded, the command is left to be resumed",
                extra={"fields": problem},
            )
            return True
        except FAILURES as error:  # every route and retry the reply's time allowed was tried (not a send unanswered)
            fields.update(route="failed", reply_code=error.code)
            problem = {"msg_id": message.msg_id, "reply_code": error.code, "status": described(error)["status"]}
            log.error("card not delivered: every route and retry failed", extra={"fields": problem})
        except Exception:
            log.exception("reply failed", extra={"fields": {"msg_id": message.msg_id}})
            fields["route"] = "failed"
        return False

    def _handled(
        self, reply: Reply, fields: dict[str, object], started: float, work: budget.Budget, sending: budget.Budget
    ) -> None:
        fields.update(
            outcome=reply.outcome, code=reply.data.get("code", ""), request_id=reply.data.get("request_id", "")
        )
        retries = work.retries + sending.retries
        fields.update(attempts=work.attempts + sending.attempts, retries=retries)
        latency_ms = fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        undelivered = fields["route"] == "failed"
        self.telemetry.handled(reply.outcome, _codes(reply), latency_ms, retries, undelivered=undelivered)
        log.info("message handled", extra={"fields": fields})

    def _fields(self, message: Message) -> dict[str, object]:
        fields: dict[str, object] = {"msg_id": message.msg_id, "conversation": "group" if message.is_group else "1:1"}
        if message.per_organization:
            fields["corp_id"] = message.chatbot_corp_id
        return fields

    async def _not_handled(self, message: Message, verdict: Verdict, fields: dict[str, object]) -> None:
        """A repeat (said by `repeats`), or a message over its sender's rate limit after the "slow down" card."""
        if verdict == Verdict.DROP:
            self.telemetry.counters["rate_limited"] += 1
            log.info("message dropped: sender over the rate limit", extra={"fields": fields})
        await self.intake.finish(message.key)

    async def _decide(
        self,
        dingtalk: DingTalkApi,
        message: Message,
        command: Command,
        progress: Progress,
        resumed: Entry | None,
        verdict: Verdict,
    ) -> Reply | None:
        """The reply to an admitted message; None when its command is held back (a step it cannot record)."""
        if resumed is not None and self.intake.poisoned(resumed):
            return self._parked(message, resumed)
        if verdict == Verdict.SLOW_DOWN:
            return Reply(Outcome.SLOW_DOWN)
        try:
            return await self._run_command(dingtalk, message, command, progress)
        except StepHeldBack:
            return None

    def _parked(self, message: Message, entry: Entry) -> Reply:
        self.telemetry.counters["parked"] += 1
        fields = {"msg_id": message.msg_id, "attempts": entry.attempts}
        log.error("journal entry parked: its handling never finished, it is not tried again", extra={"fields": fields})
        return Reply(Outcome.INTERNAL_ERROR)

    async def _run_command(
        self, dingtalk: DingTalkApi, message: Message, command: Command, progress: Progress
    ) -> Reply:
        try:
            context = Context(
                message,
                dingtalk,
                self.users,
                self.names,
                self.config,
                self.audits,
                self.previews,
                self.telemetry.stats,
                self.user_tokens,
                progress,
            )
            return await HANDLERS[command.name](context, command)
        except CommandError as ended:
            return ended.reply
        except StepHeldBack:
            raise
        except ConsentNeeded:
            return await self._offer_connect(dingtalk, message, command)
        except Exception:
            log.exception("command failed", extra={"fields": {"msg_id": message.msg_id, "command": command.name}})
            return Reply(Outcome.INTERNAL_ERROR)

    async def _offer_connect(self, dingtalk: DingTalkApi, message: Message, command: Command) -> Reply:
        """The sender's own token is needed: the connect card, their command waiting for their consent."""
        assert self.connector is not None
        try:
            union_id = await self.users.union_id(message, dingtalk)  # known: the handler identified them first
            url = await self.connector.offer(message, message.text or "", command.locale, union_id)
        except Exception:
            log.exception("connect link failed", extra={"fields": {"msg_id": message.msg_id}})
            return Reply(Outcome.INTERNAL_ERROR)
        return Reply(Outcome.CONNECT_ACCOUNT, {"connect_url": url}, private=True)

    async def _reply(
        self,
        dingtalk: DingTalkApi,
        message: Message,
        reply: Reply,
        locale: str,
        progress: Progress,
        fields: dict[str, object],
    ) -> budget.Budget:
        """Send the card under its card step, then cross the message out; the budget the sending spent."""
        card_step = before_send.current.set(self.intake.card_step(message.key, progress))
        try:  # the reply gets its own budget: a command that used up its time still gets its card
            with budget.spending(self.config.command_timeout) as sending:
                held_back = await self.send(dingtalk, message, reply, locale, fields)
        finally:
            before_send.current.reset(card_step)
        if held_back:
            self.intake.release(message.key)  # answered by whoever resumes it once Redis is back, never twice
        else:
            await self.intake.finish(message.key)
        return sending

    async def _deliver(self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str) -> str:
        if message.card and self.presses is not None:  # a card press: answered on that card, for its presser
            route = await self.presses.in_place(dingtalk, message, reply, locale)
            if route:
                return route
            alone = replace(message, conversation_type=ONE_TO_ONE, card="")  # refused: their own result, 1:1
            return "in-place-refused:" + await self._deliver(dingtalk, alone, reply, locale)
        card = render_card(reply, locale)
        if reply.outcome == Outcome.CONNECT_ACCOUNT:
            card = with_connect_button(card, reply.data["connect_url"], locale)
        elif self.presses is not None and reply.actions and card.interactive:
            route = await self.presses.interactive.deliver(dingtalk, message, reply, locale)
            if route:
                return route
        if message.is_group and (card.interactive or reply.private):
            notice = render_card(Reply(Outcome.SENT_PRIVATELY, {"title": card.title}), locale)
            return await deliver_privately(dingtalk, message, card, notice, self.config.oapi_base)
        return await deliver(dingtalk, message, card, self.config.oapi_base)


class Busy:
    """Too many messages wait: a short "busy" card, with no DingTalk call but the reply itself, at most once per
    sender per rate-limit window and at most MAX_BUSY_REPLIES at once; any other refused message is only counted."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._told = RecentIds(pipeline.config.user_rate_window, MAX_BUSY_TOLD)
        self._replies: set[asyncio.Task[None]] = set()

    def refuse(self, message: Message) -> None:
        """What the inbox calls for a message it cannot take: never awaits, so the reader never waits."""
        self._pipeline.telemetry.counters["busy_refused"] += 1
        if len(self._replies) >= MAX_BUSY_REPLIES or not self._told.claim(message.sender_key):
            log.info("message refused: too many waiting", extra={"fields": {"msg_id": message.msg_id, "told": False}})
            self._pipeline.intake.finish_later(message.key)
            return
        reply = asyncio.create_task(self._answer(message))
        self._replies.add(reply)
        reply.add_done_callback(self._replies.discard)

    async def sent(self, seconds: float) -> None:
        """Wait (at most `seconds`) for the "busy" cards on their way."""
        if self._replies:
            await asyncio.wait(set(self._replies), timeout=seconds)

    async def _answer(self, message: Message) -> None:
        pipeline = self._pipeline
        fields: dict[str, object] = {"msg_id": message.msg_id, "told": True}
        locale = parse(message.text, pipeline.languages.of(message.sender_key, pipeline.config.locale)).locale
        dingtalk = await pipeline.api_for(message)
        with budget.spending(pipeline.config.command_timeout):
            await pipeline.send(dingtalk, message, Reply(Outcome.BUSY), locale, fields)
        await pipeline.intake.finish(message.key)
        log.info("message refused: too many waiting", extra={"fields": fields})


def _codes(reply: Reply) -> list[str]:
    """DingTalk's error codes in a reply: its own, or each calendar's in a combined one."""
    items = reply.data.get("items") or ()
    return [str(reply.data.get("code") or ""), *(str(item.get("code") or "") for item in items)]
