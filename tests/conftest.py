"""Shared fixtures: the loopback DingTalk sandbox, the real bot in the test's event loop, a test's own redis-server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import settings

from bot.sandbox.platform import Sandbox
from tests.botinprocess import BotInProcess
from tests.helpers import BOT_ENV, running_bot, started_sandbox
from tests.redisserver import RedisServer

# The README's test command draws the same examples every day, so a fresh clone is green or red for its code alone;
# HYPOTHESIS_PROFILE=explore draws new ones (run it when a property's code changes).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest_asyncio.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(autouse=True)
async def _no_faults_left_behind(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").clear_faults()


@pytest_asyncio.fixture(scope="session")
async def bot(sandbox: Sandbox) -> AsyncIterator[BotInProcess]:
    async with running_bot(sandbox, BOT_ENV) as running:
        yield running
        assert await running.stop() == 0


@pytest_asyncio.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, on a free loopback port."""
    server = await RedisServer().start()
    yield server
    server.stop()
