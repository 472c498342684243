"""What the journal's tests share: a message as the journal keeps it, and a DingTalk answer held back while the bot
is stopped or dies."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bot.models import Message
from bot.stores.audit import AuditRecord

ENV = {  # the journal's tests: quick retries and reconnects, no pacing in the way
    "BOT_RETRY_PAUSE_SCALE": "0.01",
    "BOT_STREAM_RETRY_SECONDS": "0.1",
    "BOT_COMMAND_TIMEOUT": "5",
    "BOT_API_QPS": "1000",  # every command of a burst reaches its calendar call at once
}
UNSUBSCRIBED = "✅ Unsubscribed"


class Held:
    """A DingTalk answer held until the test releases it (then a 500): the bot dies while it waits. `effect` runs
    when the request arrives, as when DingTalk has done the work but its answer never reached the bot."""

    def __init__(self, effect: Callable[[web.Request], None] | None = None, status: int = 500) -> None:
        self.released = asyncio.Event()
        self._effect = effect
        self._status = status

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self._effect is not None:
            self._effect(request)
        await self.released.wait()
        if self._status == 200:
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        return web.json_response({"code": "ServiceUnavailable", "message": "gone"}, status=self._status)


def journaled(number: int) -> Message:
    """The message numbered `number` of a sender, as a journal entry holds it."""
    return Message(
        msg_id=f"msg-{number}",
        text=f"unsubscribe cal-{number}",
        msgtype="text",
        conversation_type="1",
        conversation_id="cid",
        sender_staff_id="staff",
        sender_union_id="",
        sender_id="sender",
        sender_corp_id="corp",
        chatbot_corp_id="corp",
        session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=x",
        session_webhook_expires_ms=123,
        is_in_at_list=True,
        robot_code="robot",
    )


def audit_rows(state: Path, msg_id: str) -> list[tuple[Any, ...]]:
    """The audit records of one message in BOT_STATE_DIR's database: action, calendar, result."""
    with sqlite3.connect(state / "bot.sqlite3") as db:
        return db.execute("SELECT action, calendar_id, result FROM audit WHERE msg_id = ?", (msg_id,)).fetchall()


def kept_audit_rows(state: Path, msg_id: str = "") -> list[tuple[Any, ...]]:
    """The audit records of one message (of every message with no msg_id) that the journal still keeps on their way
    to bot.sqlite3 (a kill left them there): action, calendar, result."""
    with sqlite3.connect(state / "journal.sqlite3") as db:
        records = [orjson.loads(record) for (record,) in db.execute("SELECT record FROM kept")]
    fields = [field.name for field in dataclasses.fields(AuditRecord)]
    kept = [dict(zip(fields, record, strict=True)) for record in records]
    return [(k["action"], k["calendar_id"], k["result"]) for k in kept if msg_id in ("", k["msg_id"])]


def durable_audit_rows(state: Path, msg_id: str) -> set[tuple[Any, ...]]:
    """What a kill cannot take any more of one message's audit records: those in bot.sqlite3 and those the journal
    keeps (the next start writes those into bot.sqlite3)."""
    return set(audit_rows(state, msg_id)) | set(kept_audit_rows(state, msg_id))
