"""A huge DingTalk answer is refused without taking the memory: the process's own peak (VmHWM) shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from bot.sandbox.answers import gzip_bomb, huge_answer, raw_answer
from bot.sandbox.http import Responder
from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import new_user, running_process, started_sandbox

ENV = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "3.0", "BOT_HTTP_TIMEOUT": "1.0", "BOT_RETRY_PAUSE_SCALE": "0.01"}


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(scope="module")
async def bot(sandbox: Sandbox) -> AsyncIterator[BotProcess]:
    async with running_process(sandbox, ENV) as process:
        yield process
        assert await process.stop() == 0


def announced(size: int) -> Responder:
    return raw_answer(200, " " * size, "application/json")  # with its Content-Length


@pytest.mark.parametrize(
    ("answer", "size"),
    [(huge_answer, 300 * 2**20), (gzip_bomb, 300 * 2**20), (announced, 3 * 2**20)],
    ids=["300 MB", "gzip bomb of 300 MB", "3 MB announced"],
)
async def test_a_huge_answer_is_refused_without_taking_the_memory(
    sandbox: Sandbox, bot: BotProcess, answer: Callable[[int], Responder], size: int
) -> None:
    user = new_user(sandbox)
    sandbox.answer_next("calendars", answer(size), times=2)
    data = sandbox.chat("list", user.staff_id)

    await sandbox.wait_ack(await sandbox.push(data))
    entry = await bot.wait_log("message handled", timeout=30, msg_id=data["msgId"])

    assert entry["outcome"] == "no_calendars" and entry["retries"] == 2  # refused twice, then the real answer
    assert bot.peak_memory_mib() < 150
    logged = [line for line in bot.logs("unexpected answer from DingTalk") if line["api"] == "calendars"]
    assert any(f"over {2 * 2**20} bytes" in line["problem"] or "announces" in line["problem"] for line in logged)
