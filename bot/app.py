"""Wiring: builds the parts, handles each Message end to end (parse, act, render, reply), shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from bot import budget, cards
from bot.commands import parse
from bot.config import Config
from bot.dedupe import RecentIds
from bot.dingtalk import DingTalkClient
from bot.errors import DingTalkError
from bot.handlers import HANDLERS, Context
from bot.http import AiohttpTransport
from bot.inbox import Inbox
from bot.intake import CARD, Intake, build_journal
from bot.journal import Entry
from bot.languages import LastLanguages
from bot.models import Command, Message, Outcome, Reply
from bot.names import CalendarNames
from bot.progress import Progress
from bot.redis_state import RedisState, connect
from bot.replies import deliver, deliver_privately
from bot.state import LocalState
from bot.transport import StreamClient
from bot.users import UserDirectory

log = logging.getLogger("bot.app")
FAILED_OUTCOMES = frozenset({Outcome.INTERNAL_ERROR, Outcome.TEMPORARY_PROBLEM})
MAX_BUSY_REPLIES = 32  # "busy" cards being sent at once; a flood beyond the inbox must not grow a task per message
MAX_BUSY_TOLD = 20_000  # senders remembered as told "busy" within the window


def build_state(config: Config) -> LocalState:
    """Shared through Redis when REDIS_URL is set; otherwise kept in this process (one dyno)."""
    if not config.redis_url:
        return LocalState(config.api_qps, config.user_rate, config.user_rate_window)
    client = connect(config.redis_url, config.redis_tls_verify)
    windows = (config.user_rate_window, config.dedupe_seconds)
    return RedisState(client, config.client_id, config.api_qps, config.user_rate, *windows)


class VitalTaskEnded(Exception):
    """The Stream loop or the heartbeat ended while the process was meant to run."""


class App:
    """The bot: takes Messages from the Stream connection and answers each one with a card."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = build_state(config)
        self.dingtalk = DingTalkClient(config, AiohttpTransport(config.max_in_flight + 8), self.state)
        self.users = UserDirectory(self.dingtalk, self.state)
        self.names = CalendarNames()
        self.languages = LastLanguages()
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
        self.intake = Intake(build_journal(config), self.inbox.accept)
        self.stream = StreamClient(self.dingtalk, self.intake.accept, config)
        self.counters: Counter[str] = Counter()
        self._shutting_down = False

    async def run(self) -> None:
        """Serve until shutdown(). If the Stream loop or the heartbeat ends before that, log it and raise
        VitalTaskEnded: a process that stays up deaf is never restarted by its dyno manager."""
        self.inbox.start()
        await self.intake.open()
        stream = asyncio.create_task(self.stream.run())
        heartbeat = asyncio.create_task(self._heartbeat())
        vital = {stream: "stream loop", heartbeat: "heartbeat"}
        done, _ = await asyncio.wait(vital, return_when=asyncio.FIRST_COMPLETED)
        if not self._shutting_down:
            ended = done.pop()
            error = None if ended.cancelled() else ended.exception()
            fields = {"task": vital[ended], "error": type(error).__name__ if error else "returned"}
            log.error("watchdog: a vital task ended, exiting", extra={"fields": fields}, exc_info=error)
            raise VitalTaskEnded(vital[ended])
        heartbeat.cancel()
        await stream

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking messages, finish those already accepted (their cards sent), then close the HTTP client."""
        self._shutting_down = True
        await self.stream.stop()
        unfinished, _ = await asyncio.gather(self.inbox.drain(grace_seconds), self._busy_replies_sent(grace_seconds))
        if unfinished:
            fields = {"unfinished": unfinished}
            log.error(
                "shutdown left messages unfinished: the journal keeps them for the next start", extra={"fields": fields}
            )
        log.info("stopped", extra={"fields": self._snapshot()})
        await self.intake.close()
        await self.dingtalk.aclose()
        await self.state.close()

    async def handle(self, message: Message) -> None:
        started = time.perf_counter()
        progress, resumed = self.intake.take(message)
        if self.intake.answered(resumed):
            log.warning("resumed message already answered", extra={"fields": {"msg_id": message.msg_id}})
            await self.intake.finish(message.msg_id)
            return
        # a resumed message was admitted (and counted against its sender) by the handling it resumes
        verdict = "allow" if resumed else await self.state.admit(message.msg_id, message.sender_key)
        fields: dict[str, object] = {"msg_id": message.msg_id, "conversation": "group" if message.is_group else "1:1"}
        if verdict == "taken":
            self.counters["taken_elsewhere"] += 1
            log.info("message taken by another dyno", extra={"fields": fields})
            await self.intake.finish(message.msg_id)
            return
        if verdict == "drop":
            self.counters["rate_limited"] += 1
            log.info("message dropped: sender over the rate limit", extra={"fields": fields})
            await self.intake.finish(message.msg_id)
            return
        command = parse(message.text, self.languages.of(message.sender_key, self.config.locale))
        if command.understood:
            self.languages.remember(message.sender_key, command.locale)
        with budget.spending(self.config.command_timeout) as work:
            if resumed is not None and self.intake.poisoned(resumed):
                reply = self._parked(message, resumed)
            elif verdict == "slow_down":
                reply = Reply(Outcome.SLOW_DOWN)
            else:
                reply = await self._run_command(message, command, progress)
        fields.update(command=command.name, outcome=reply.outcome, code=reply.data.get("code", ""))
        fields["request_id"] = reply.data.get("request_id", "")
        await progress.record(CARD, True)
        # The reply gets its own budget: a command that used up its time still gets its card.
        with budget.spending(self.config.command_timeout) as sending:
            try:
                fields["route"] = await self._answer(message, reply, command.locale)
            except DingTalkError as error:
                fields.update(route="failed", reply_code=error.code)
            except Exception:
                log.exception("reply failed", extra={"fields": {"msg_id": message.msg_id}})
                fields["route"] = "failed"
        await self.intake.finish(message.msg_id)
        fields["resumed"] = resumed is not None
        retries = work.retries + sending.retries
        fields.update(attempts=work.attempts + sending.attempts, retries=retries)
        fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
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
            self.intake.finish_later(message.msg_id)
            return
        reply = asyncio.create_task(self._answer_busy(message))
        self._busy_replies.add(reply)
        reply.add_done_callback(self._busy_replies.discard)

    async def _answer_busy(self, message: Message) -> None:
        fields: dict[str, object] = {"msg_id": message.msg_id, "told": True}
        locale = parse(message.text, self.config.locale).locale
        with budget.spending(self.config.command_timeout):
            try:
                fields["route"] = await self._answer(message, Reply(Outcome.BUSY), locale)
            except DingTalkError as error:
                fields.update(route="failed", reply_code=error.code)
            except Exception:
                log.exception("reply failed", extra={"fields": {"msg_id": message.msg_id}})
                fields["route"] = "failed"
        await self.intake.finish(message.msg_id)
        log.info("message refused: too many waiting", extra={"fields": fields})

    async def _busy_replies_sent(self, seconds: float) -> None:
        if self._busy_replies:
            await asyncio.wait(set(self._busy_replies), timeout=seconds)

    def _parked(self, message: Message, entry: Entry) -> Reply:
        self.counters["parked"] += 1
        fields = {"msg_id": message.msg_id, "attempts": entry.attempts}
        log.error("journal entry parked: its handling never finished, it is not tried again", extra={"fields": fields})
        return Reply(Outcome.INTERNAL_ERROR)

    async def _run_command(self, message: Message, command: Command, progress: Progress) -> Reply:
        try:
            context = Context(message, self.dingtalk, self.users, self.names, progress)
            return await HANDLERS[command.name](context, command)
        except Exception:
            log.exception("command failed", extra={"fields": {"msg_id": message.msg_id, "command": command.name}})
            return Reply(Outcome.INTERNAL_ERROR)

    async def _answer(self, message: Message, reply: Reply, locale: str) -> str:
        card = cards.render(reply, locale)
        if message.is_group and card.interactive:
            notice = cards.render(Reply(Outcome.SENT_PRIVATELY, {"title": card.title}), locale)
            return await deliver_privately(self.dingtalk, message, card, notice, self.config.oapi_base)
        return await deliver(self.dingtalk, message, card, self.config.oapi_base)

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
        }

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            log.info("heartbeat", extra={"fields": self._snapshot()})
            if self.config.fault == "heartbeat-ends":
                return
            if self.config.fault == "stream-loop-ends":
                await self.stream.stop()
