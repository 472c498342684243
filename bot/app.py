"""Wiring: builds the parts, handles each Message end to end (parse, act, render, reply), shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import time

from bot import cards
from bot.commands import parse
from bot.config import Config
from bot.dedupe import RecentIds
from bot.dingtalk import DingTalkClient, DingTalkError, new_http_client
from bot.handlers import HANDLERS, Context
from bot.models import Message, Reply
from bot.replies import deliver, deliver_privately
from bot.transport import StreamClient
from bot.users import UserDirectory

log = logging.getLogger("bot.app")


class App:
    """The bot: takes Messages from the Stream connection and answers each one with a card."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dingtalk = DingTalkClient(config, new_http_client(config.http_timeout))
        self.users = UserDirectory(self.dingtalk)
        self.stream = StreamClient(self.dingtalk, self.accept)
        self._handled = RecentIds()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self.stream.run()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking messages, let those in flight finish (cards sent), then close the HTTP client."""
        await self.stream.stop()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace_seconds)
        await self.dingtalk.aclose()

    def accept(self, message: Message) -> None:
        """Take a message off the connection (already ACKed); a repeat of a handled msgId is dropped."""
        if not self._handled.claim(message.msg_id):
            log.info("duplicate message dropped", extra={"fields": {"msg_id": message.msg_id}})
            return
        task = asyncio.create_task(self.handle(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, message: Message, reply: Reply, locale: str) -> str:
        card = cards.render(reply, locale)
        if message.is_group and card.interactive:
            notice = cards.render(Reply("sent_privately", {"title": card.title}), locale)
            return await deliver_privately(self.dingtalk, message, card, notice, self.config.oapi_base)
        return await deliver(self.dingtalk, message, card, self.config.oapi_base)

    async def handle(self, message: Message) -> None:
        started = time.perf_counter()
        command = parse(message.text, self.config.locale)
        try:
            reply = await HANDLERS[command.name](Context(message, self.dingtalk, self.users), command)
        except Exception:
            log.exception("command failed", extra={"fields": {"msg_id": message.msg_id, "command": command.name}})
            reply = Reply("internal_error")
        fields = {
            "msg_id": message.msg_id,
            "conversation": "group" if message.is_group else "1:1",
            "command": command.name,
            "outcome": reply.outcome,
            "code": reply.data.get("code", ""),
            "request_id": reply.data.get("request_id", ""),
        }
        try:
            fields["route"] = await self._answer(message, reply, command.locale)
        except DingTalkError as error:
            fields.update(route="failed", reply_code=error.code)
        except Exception:
            log.exception("reply failed", extra={"fields": {"msg_id": message.msg_id}})
            fields["route"] = "failed"
        fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.info("message handled", extra={"fields": fields})
