"""Shared fixtures: the loopback DingTalk sandbox, a real bot process, and a redis-server of a test's own."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from bot.sandbox import Sandbox
from tests.botprocess import BotProcess
from tests.redisserver import RedisServer

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
async def running_bot(sandbox: Sandbox, env: dict[str, str], connections: int = 1) -> AsyncIterator[BotProcess]:
    """A real `python -m bot` connected to the sandbox (the `connections`-th connection); stopped on exit."""
    process = await BotProcess({**sandbox.bot_env(), **env}).start()
    try:
        await sandbox.wait_connected(connections)
        yield process
    finally:
        await process.stop()


@pytest_asyncio.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(autouse=True)
async def _no_faults_left_behind(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").clear_faults()


# A short command budget keeps the tests of persistent DingTalk failures quick.
BOT_ENV = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "2"}


@pytest_asyncio.fixture(scope="session")
async def bot(sandbox: Sandbox) -> AsyncIterator[BotProcess]:
    async with running_bot(sandbox, BOT_ENV) as process:
        yield process
        assert await process.stop() == 0


@pytest_asyncio.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, on a free loopback port."""
    server = await RedisServer().start()
    yield server
    server.stop()
