"""Wiring: builds the parts, handles each Message end to end (parse, act, render, reply), shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from bot.auth.api import DingTalkApi
from bot.auth.connect import Connector, with_connect_button
from bot.auth.credentials import Authorizer
from bot.auth.isv import SuiteEvents
from bot.auth.oauth_web import OAuthServer
from bot.auth.policy import policy_for
from bot.auth.sealing import Sealer
from bot.auth.user_tokens import ConsentNeeded, UserAuthorizer, UserTokens
from bot.auth.users import UserDirectory
from bot.cards.delivery import deliver, deliver_privately
from bot.cards.render import render as render_card
from bot.commands.names import CalendarNames
from bot.commands.parse import parse
from bot.commands.progress import Progress, StepHeldBack
from bot.commands.routes import HANDLERS, CommandError, Context
from bot.config import Config
from bot.dingtalk import before_send, budget
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.errors import FAILURES, CardHeldBack, described
from bot.dingtalk.http import AiohttpTransport
from bot.dingtalk.recent_calendars import RecentCalendars
from bot.models import Command, Message, Outcome, Reply, Verdict
from bot.stats import Stats
from bot.stores.build import StateUnavailable, build_stores
from bot.stores.dedupe import RecentIds
from bot.stores.journal import Entry
from bot.stream.inbox import Inbox
from bot.stream.intake import Intake
from bot.stream.transport import StreamClient

log = logging.getLogger("bot.app")
FAILED_OUTCOMES = frozenset({Outcome.INTERNAL_ERROR, Outcome.TEMPORARY_PROBLEM})
MAX_BUSY_REPLIES = 32  # "busy" cards being sent at once; a flood beyond the inbox must not grow a task per message
MAX_BUSY_TOLD = 20_000  # senders remembered as told "busy" within the window


class VitalTaskEnded(Exception):
    """The Stream loop or the heartbeat ended while the process was meant to run."""


class App:
    """The bot: takes Messages from the Stream connection and answers each one with a card."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = policy_for(config)
        self.stores = build_stores(config, self.policy.per_organization)
        transport = AiohttpTransport(config.max_in_flight + 8)
        self.dingtalk = DingTalkClient(config, transport, self.stores.limiter, self.policy.robot_code(config))
        self.authorizer: Authorizer = self.policy.authorizer(config, self.stores, self.dingtalk)
        self.suite_events: SuiteEvents | None = self.policy.suite_events(config, self.stores)
        self.users = UserDirectory(self.stores.union_ids, per_organization=self.policy.per_organization)
        self.names = CalendarNames()
        self.calendar_lists = RecentCalendars()
        self.languages = self.stores.languages
        self.inbox = Inbox(
            self.handle,
            config.max_in_flight,
            self.refuse,
            per_sender=config.max_in_flight_per_sender,
            capacity=config.inbox_capacity,
            dedupe_seconds=config.dedupe_seconds,
        )
        self._told_busy = RecentIds(config.user_rate_window, MAX_BUSY_TOLD)
        self._busy_replies: set[asyncio.Task[None]] = set()
        on_event = self.suite_events.handle if self.suite_events else None
        self.intake = Intake(self.stores.journal, self.inbox.accept)
        self.stream = StreamClient(
            self.dingtalk, self.intake.accept, config, on_event, per_organization=self.policy.per_organization
        )
        self.counters: Counter[str] = Counter()
        self.stats = Stats(self._counted_elsewhere)
        self._shutting_down = False
        self.user_tokens: UserTokens | None = None
        self.connector: Connector | None = None
        self.oauth: OAuthServer | None = None
        if config.user_tokens:  # calendar calls with each user's own token, connected through the OAuth redirect
            sealer = Sealer(config.secret_key)
            self.user_tokens = UserTokens(self.stores.tokens, self.stores.user_grants, sealer, self.dingtalk)
            self.authorizer = UserAuthorizer(self.authorizer, self.user_tokens)
            self.connector = Connector(config, self.stores.user_grants, sealer, self.user_tokens, self.dingtalk)
            self.oauth = OAuthServer(self.connector, config.port, config.locale, self.intake.accept)

    async def run(self) -> None:
        """Serve until shutdown(). If the Stream loop or the heartbeat ends before that, log it and raise
        VitalTaskEnded: a process that stays up deaf is never restarted by its dyno manager."""
        try:
            await self.stores.open()
        except StateUnavailable as unavailable:
            log.error("the bot's state cannot be kept, exiting", extra={"fields": {"problem": str(unavailable)}})
            raise VitalTaskEnded("state") from None
        self.inbox.start()
        await self.intake.open()
        if self.oauth is not None:
            try:
                await self.oauth.start()
            except OSError as unbound:
                log.error("the OAuth redirect cannot be served, exiting", extra={"fields": {"problem": str(unbound)}})
                raise VitalTaskEnded("web server") from None
            if self.config.dyno.startswith("worker."):  # app.json starts the worker; its port is nobody's
                fix = "heroku ps:scale worker=0 web=1 (or, with REDIS_URL, web=1 beside the workers)"
                log.warning(
                    "this worker dyno's OAuth port is not reachable: Heroku routes $PORT to web dynos only, so "
                    "users' consent needs a web dyno",
                    extra={"fields": {"dyno": self.config.dyno, "fix": fix}},
                )
        stream = asyncio.create_task(self.stream.run())
        heartbeat = asyncio.create_task(self._heartbeat())
        watching = self.policy.relieved_watcher(self.stores)
        watcher = asyncio.create_task(watching.run()) if watching is not None else None
        vital = {stream: "stream loop", heartbeat: "heartbeat"}
        done, _ = await asyncio.wait(vital, return_when=asyncio.FIRST_COMPLETED)
        if not self._shutting_down:
            ended = done.pop()
            error = None if ended.cancelled() else ended.exception()
            fields = {"task": vital[ended], "error": type(error).__name__ if error else "returned"}
            log.error("watchdog: a vital task ended, exiting", extra={"fields": fields}, exc_info=error)
            raise VitalTaskEnded(vital[ended])
        heartbeat.cancel()
        if watcher is not None:
            watcher.cancel()
        await stream

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking messages, finish those already accepted (their cards sent), then close the HTTP client."""
        self._shutting_down = True
        await self.stream.stop()
        if self.oauth is not None:
            await self.oauth.stop()
        unfinished, _ = await asyncio.gather(self.inbox.drain(grace_seconds), self._busy_replies_sent(grace_seconds))
        if unfinished:
            fields = {"unfinished": unfinished}
            log.error(
                "shutdown left messages unfinished: the journal keeps them for the next start", extra={"fields": fields}
            )
        log.info("stopped", extra={"fields": self._snapshot()})
        await self.intake.close()
        await self.dingtalk.aclose()
        await self.stores.close()

    async def handle(self, message: Message) -> None:
        started = time.perf_counter()
        progress, resumed = self.intake.take(message)
        if self.intake.answered(resumed):
            log.warning("resumed message already answered", extra={"fields": {"msg_id": message.msg_id}})
            await self.intake.finish(message.key)
            return
        # a resumed message was admitted (and counted against its sender) by the handling it resumes
        sender = message.sender_key  # built once: the sender's limit and language share one string, not a copy each
        verdict = Verdict.ALLOW if resumed else await self.stores.admission.admit(message.key, sender)
        fields: dict[str, object] = {"msg_id": message.msg_id, "conversation": "group" if message.is_group else "1:1"}
        if self.policy.per_organization:
            fields["corp_id"] = message.chatbot_corp_id
        if verdict == Verdict.TAKEN:
            self.counters["taken_elsewhere"] += 1
            log.info("message taken by another dyno", extra={"fields": fields})
            await self.intake.finish(message.key)
            return
        if verdict == Verdict.DROP:
            self.counters["rate_limited"] += 1
            log.info("message dropped: sender over the rate limit", extra={"fields": fields})
            await self.intake.finish(message.key)
            return
        command = parse(message.text, self.languages.of(sender, self.config.locale))
        dingtalk = DingTalkApi(self.dingtalk, await self.authorizer.authorize(message), self.calendar_lists)
        if command.understood:
            self.languages.remember(sender, command.locale)
        with budget.spending(self.config.command_timeout) as work:
            if resumed is not None and self.intake.poisoned(resumed):
                reply = self._parked(message, resumed)
            elif verdict == Verdict.SLOW_DOWN:
                reply = Reply(Outcome.SLOW_DOWN)
            else:
                try:
                    reply = await self._run_command(dingtalk, message, command, progress)
                except StepHeldBack:  # nothing asked of DingTalk without its step: whoever resumes it asks
                    fields["command"] = command.name
                    log.warning("command held back: its step cannot be recorded", extra={"fields": fields})
                    self.intake.release(message.key)
                    return
        fields.update(command=command.name, outcome=reply.outcome, code=reply.data.get("code", ""))
        fields["request_id"] = reply.data.get("request_id", "")
        # The reply gets its own budget: a command that used up its time still gets its card.
        card_step = before_send.current.set(self.intake.card_step(message.key, progress))
        try:
            with budget.spending(self.config.command_timeout) as sending:
                held_back = await self._send(dingtalk, message, reply, command.locale, fields)
        finally:
            before_send.current.reset(card_step)
        if held_back:
            self.intake.release(message.key)  # answered by whoever resumes it once Redis is back, never twice
        else:
            await self.intake.finish(message.key)
        fields["resumed"] = resumed is not None
        retries = work.retries + sending.retries
        fields.update(attempts=work.attempts + sending.attempts, retries=retries)
        latency_ms = fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        self.stats.record(reply.outcome, _codes(reply), latency_ms, retries)
        self.counters["handled"] += 1
        self.counters["retried"] += retries
        self.counters["failed"] += reply.outcome in FAILED_OUTCOMES or fields["route"] == "failed"
        log.info("message handled", extra={"fields": fields})

    def refuse(self, message: Message) -> None:
        """Too many messages wait: a short "busy" card, with no DingTalk call but the reply itself, at most once per
        sender per rate-limit window and at most MAX_BUSY_REPLIES at once; any other refused message is only counted."""
        self.counters["busy_refused"] += 1
        if len(self._busy_replies) >= MAX_BUSY_REPLIES or not self._told_busy.claim(message.sender_key):
            log.info("message refused: too many waiting", extra={"fields": {"msg_id": message.msg_id, "told": False}})
            self.intake.finish_later(message.key)
            return
        reply = asyncio.create_task(self._answer_busy(message))
        self._busy_replies.add(reply)
        reply.add_done_callback(self._busy_replies.discard)

    async def _answer_busy(self, message: Message) -> None:
        fields: dict[str, object] = {"msg_id": message.msg_id, "told": True}
        locale = parse(message.text, self.languages.of(message.sender_key, self.config.locale)).locale
        dingtalk = DingTalkApi(self.dingtalk, await self.authorizer.authorize(message), self.calendar_lists)
        with budget.spending(self.config.command_timeout):
            await self._send(dingtalk, message, Reply(Outcome.BUSY), locale, fields)
        await self.intake.finish(message.key)
        log.info("message refused: too many waiting", extra={"fields": fields})

    async def _busy_replies_sent(self, seconds: float) -> None:
        if self._busy_replies:
            await asyncio.wait(set(self._busy_replies), timeout=seconds)

    def _parked(self, message: Message, entry: Entry) -> Reply:
        self.counters["parked"] += 1
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
                self.stores.audits,
                self.stores.previews,
                self.stats,
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

    async def _send(
        self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str, fields: dict[str, object]
    ) -> bool:
        """Send the card; `fields` gets its route ("failed" with the reason when it could not be delivered). True when
        the card was held back: it is left to whoever resumes the command."""
        try:
            fields["route"] = await self._answer(dingtalk, message, reply, locale)
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

    async def _answer(self, dingtalk: DingTalkApi, message: Message, reply: Reply, locale: str) -> str:
        card = render_card(reply, locale)
        if reply.outcome == Outcome.CONNECT_ACCOUNT:
            card = with_connect_button(card, reply.data["connect_url"], locale)
        if message.is_group and (card.interactive or reply.private):
            notice = render_card(Reply(Outcome.SENT_PRIVATELY, {"title": card.title}), locale)
            return await deliver_privately(dingtalk, message, card, notice, self.config.oapi_base)
        return await deliver(dingtalk, message, card, self.config.oapi_base)

    def _counted_elsewhere(self) -> dict[str, int]:
        """The counts `stats` shows that other parts keep: repeats dropped, reconnects, DingTalk calls by API."""
        counts = {f"api:{api}": calls for api, calls in self.dingtalk.calls.items()}
        counts["duplicates"] = self.inbox.deduplicated + self.counters["taken_elsewhere"] + self.intake.repeats
        counts["reconnects"] = self.stream.reconnects
        return counts

    def _snapshot(self) -> dict[str, int]:
        return {
            "handled": self.counters["handled"],
            "failed": self.counters["failed"],
            "retried": self.counters["retried"],
            "deduplicated": self.inbox.deduplicated + self.counters["taken_elsewhere"] + self.intake.repeats,
            "rate_limited": self.counters["rate_limited"],
            "busy_refused": self.counters["busy_refused"],
            "in_flight": self.inbox.in_flight,
            "reconnects": self.stream.reconnects,
            "failed_connections": self.stream.failed_connections,
        }

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            log.info("heartbeat", extra={"fields": self._snapshot()})
            if self.config.fault == "heartbeat-ends":
                return
            if self.config.fault == "stream-loop-ends":
                await self.stream.stop()


def _codes(reply: Reply) -> list[str]:
    """DingTalk's error codes in a reply: its own, or each calendar's in a combined one."""
    items = reply.data.get("items") or ()
    return [str(reply.data.get("code") or ""), *(str(item.get("code") or "") for item in items)]
