"""What the interactive card tests share: the real bot in this event loop against a sandbox, and reading its cards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.sandbox.cards import TEMPLATE_ID
from bot.sandbox.platform import Sandbox
from tests.botinprocess import BotInProcess
from tests.helpers import started_sandbox

CARDS_ENV = {"BOT_CARD_TEMPLATE_ID": TEMPLATE_ID, "BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_COMMAND_TIMEOUT": "5"}


@asynccontextmanager
async def cards_sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as sandbox:
        yield sandbox


@asynccontextmanager
async def running_app(sandbox: Sandbox, state_dir: Path, grace: float = 2.0, **env: str) -> AsyncIterator[BotInProcess]:
    """The real bot in this event loop, connected to the sandbox with interactive cards on; stopped on exit, commands
    in flight given `grace` seconds (0: left in the journal, as by a process killed mid-command)."""
    connections = sandbox.connect_attempts
    bot = await BotInProcess({**sandbox.bot_env(), **CARDS_ENV, "BOT_STATE_DIR": str(state_dir), **env}, grace).start()
    try:
        await sandbox.wait_for(lambda: sandbox.connect_attempts > connections and sandbox.connections > 0)
        yield bot
    finally:
        await bot.stop()


def rows(sandbox: Sandbox, track: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(sandbox.cards.instances[track].public["rows"])
    return rows


def row_for(sandbox: Sandbox, track: str, name: str) -> dict[str, str]:
    """The row whose button names this calendar."""
    return next(row for row in rows(sandbox, track) if name in row["label"])


async def card_in(sandbox: Sandbox, space_id: str) -> str:
    """The outTrackId of the first card delivered to this conversation (or 1:1 to this user)."""
    track: str = await sandbox.wait_for(lambda: next(iter(sandbox.cards.in_space(space_id)), None))
    return track


async def group_card(sandbox: Sandbox, said: str | dict[str, Any]) -> str:
    """`list` said in a group (by this staff id, or this payload), pushed: the outTrackId of the card it got there."""
    data = sandbox.chat("list", said, group=True) if isinstance(said, str) else said
    await sandbox.push(data)
    return await card_in(sandbox, data["conversationId"])


async def press(sandbox: Sandbox, track: str, staff_id: str, params: dict[str, str], **extra: Any) -> dict[str, Any]:
    """Press a button as `staff_id`; the `response` of the bot's ACK."""
    message_id = await sandbox.press_card(track, staff_id, params, **extra)
    ack = await sandbox.wait_ack(message_id)
    assert ack["code"] == 200
    response: dict[str, Any] = json.loads(ack["data"])["response"]
    return response
