"""What tests share: fresh users and calendars, a started sandbox, a running bot (in this event loop or as a process),
a conversation and its card."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis.asyncio as redis

from bot.__main__ import SHUTDOWN_GRACE_SECONDS
from bot.sandbox.http import Recorded
from bot.sandbox.platform import Sandbox
from tests.botinprocess import BotInProcess
from tests.botprocess import BotProcess

SEND_AS_USER = "dtmd://dingtalkclient/sendMessage?content="
# A short command budget keeps the tests of persistent DingTalk failures quick.
BOT_ENV = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "2"}
# The one start-up warning on a Heroku dyno without Redis (its `lost_at_restart` field says what is lost).
DYNO_WARNING = (
    "state kept on the dyno's own disk, which does not outlive the dyno: set REDIS_URL so that it survives a restart "
    "or deploy"
)
_numbers = itertools.count(1)


@dataclass(frozen=True)
class User:
    staff_id: str
    union_id: str


def new_user(sandbox: Sandbox) -> User:
    """A fresh employee of the sandbox organization, so tests never share state."""
    number = next(_numbers)
    user = User(f"staff{number:04d}", f"union{number:04d}XyZ")
    sandbox.add_user(user.staff_id, user.union_id)
    return user


def new_calendar(sandbox: Sandbox, user: User, summary: str = "Company Holidays") -> str:
    """A subscribed calendar the user follows."""
    calendar_id = f"cal-{next(_numbers):04d}"
    sandbox.add_calendar(calendar_id, summary)
    sandbox.subscribe(user.union_id, calendar_id)
    return calendar_id


@asynccontextmanager
async def started_sandbox(**settings: Any) -> AsyncIterator[Sandbox]:
    platform = Sandbox(**settings)
    await platform.start()
    try:
        yield platform
    finally:
        await platform.close()


@asynccontextmanager
async def running_bot(
    sandbox: Sandbox, env: dict[str, str], connections: int = 1, grace: float = SHUTDOWN_GRACE_SECONDS
) -> AsyncIterator[BotInProcess]:
    """The real bot in this event loop, connected to the sandbox (the `connections`-th connection); stopped on exit,
    its commands in flight given `grace` seconds as SIGTERM gives them."""
    bot = await BotInProcess({**sandbox.bot_env(), **env}, grace).start()
    try:
        await sandbox.wait_connected(connections)
        yield bot
    finally:
        await bot.stop()


@asynccontextmanager
async def running_process(sandbox: Sandbox, env: dict[str, str], connections: int = 1) -> AsyncIterator[BotProcess]:
    """A real `python -m bot` connected to the sandbox (the `connections`-th connection); stopped on exit."""
    process = await BotProcess({**sandbox.bot_env(), **env}).start()
    try:
        await sandbox.wait_connected(connections)
        yield process
    finally:
        await process.stop()


async def converse(
    sandbox: Sandbox, data: dict[str, Any], socket: int | None = None
) -> tuple[dict[str, Any], Recorded]:
    """Push a chatbot message (on one chosen connection, or as DingTalk does, any); return its ACK and the reply."""
    message_id = await sandbox.push(data, socket=socket)
    ack = await sandbox.wait_ack(message_id)
    reply = await sandbox.wait_reply(data)
    return ack, reply


async def answered_after(sandbox: Sandbox, *staff_ids: str) -> None:
    """Each sender's later message answered: one sender's messages are handled one after the other, so a second card
    for an earlier message would have reached the sandbox before this answer."""
    later = [sandbox.chat("help", staff_id) for staff_id in staff_ids]
    for data in later:
        await sandbox.push(data)
    for data in later:
        await sandbox.wait_reply(data)


def card(reply: Recorded) -> dict[str, Any]:
    """The markdown or actionCard part of a sessionWebhook reply."""
    body = reply.json()
    return body.get("markdown") or body["actionCard"]


def buttons(reply: Recorded) -> list[dict[str, str]]:
    """The buttons of an actionCard sent to a sessionWebhook."""
    return card(reply).get("btns", [])


def pressed(sandbox: Sandbox, url: str, staff_id: str) -> dict[str, Any]:
    """The message DingTalk's client sends as the user when they press a button with this link."""
    assert url.startswith(SEND_AS_USER)
    return sandbox.chat(unquote(url.removeprefix(SEND_AS_USER)), staff_id)


def calendar_calls(sandbox: Sandbox, union_id: str) -> list[Recorded]:
    """Every calendar API call made for this user: list, unsubscribe, subscribe."""
    return [r for r in sandbox.requests if r.path.startswith(f"/v1.0/calendar/users/{union_id}/")]


def unsubscribe_calls(sandbox: Sandbox, union_id: str) -> list[Recorded]:
    return [r for r in calendar_calls(sandbox, union_id) if r.api == "unsubscribe"]


async def reads_by_server(client: redis.Redis) -> int:
    """How many times Redis read from its clients' sockets: one per round trip, however many commands it held."""
    return int((await client.info("stats"))["total_reads_processed"])
