"""What only a process shows of the Stream loop: the watchdog's exit code, SIGTERM, SIGINT and SIGHUP."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import card, new_calendar, new_user, running_process, started_sandbox

ENV = {"LOG_LEVEL": "DEBUG", "BOT_STREAM_RETRY_SECONDS": "0.05"}


@pytest_asyncio.fixture
async def own_sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


# --- watchdog, signals, shutdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "task"), [("stream-loop-ends", "stream loop"), ("heartbeat-ends", "heartbeat")])
async def test_the_watchdog_exits_non_zero_when_a_vital_task_ends(own_sandbox: Sandbox, fault: str, task: str) -> None:
    sandbox = own_sandbox
    process = await BotProcess({**sandbox.bot_env(), "BOT_FAULT": fault, "BOT_HEARTBEAT_SECONDS": "0.3"}).start()

    assert await process.wait(timeout=20) == 1
    [entry] = process.logs("watchdog: a vital task ended, exiting")
    assert entry["level"] == "error" and entry["task"] == task


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_stop_signal_during_a_reconnect_handshake_abandons_it_and_exits_zero(
    own_sandbox: Sandbox, signum: int
) -> None:
    sandbox = own_sandbox
    async with running_process(sandbox, ENV) as bot:
        sandbox.handshake_delay = 30.0
        attempts = sandbox.connect_attempts
        await sandbox.drop_connections()
        await sandbox.wait_for(lambda: sandbox.connect_attempts > attempts)  # the handshake is under way
        acks = dict(sandbox.acks)

        bot.signal(signum)
        stopped = time.monotonic()

        assert await bot.wait(timeout=25) == 0
        assert time.monotonic() - stopped < 5
        assert sandbox.acks == acks and sandbox.connections == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
async def test_a_stop_signal_finishes_queued_messages_then_exits_zero(signum: int) -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, {"BOT_MAX_IN_FLIGHT": "2"}) as process:
        sandbox.latency = 0.5
        users = [new_user(sandbox) for _ in range(4)]
        messages = [sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id) for user in users]
        for data in messages:
            await sandbox.wait_ack(await sandbox.push(data))

        process.signal(signum)

        assert await process.wait(timeout=25) == 0
        for data in messages:
            assert card(await sandbox.wait_reply(data, timeout=0.1))["title"] == "✅ Unsubscribed"
        assert sandbox.connections == 0
