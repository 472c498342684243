"""The OAuth port under attack, through the real process: a flood of idle half-requests cannot take the descriptors
the chat needs, and a store that fails while a grant is saved gets the bot's own page, not a stack trace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from bot.auth.oauth_web import PAGE_HEADERS
from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, started_sandbox
from tests.helpers_oauth import browse, connect_link, consent, user_env
from tests.redisserver import RedisServer, free_port

FLOOD = 1_100  # idle connections, each with half a request line
BOT_OPEN_FILES = 256  # the bot's RLIMIT_NOFILE: far fewer descriptors than the flood


@pytest_asyncio.fixture
async def platform() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as sandbox:
        yield sandbox


@contextlib.asynccontextmanager
async def bot_with(sandbox: Sandbox, env: dict[str, str], open_files: int = 0) -> AsyncIterator[BotProcess]:
    process = await BotProcess({**sandbox.bot_env(), **env}, open_files).start()
    try:
        await sandbox.wait_connected()
        await process.wait_log("serving the OAuth redirect")
        yield process
    finally:
        await process.stop()


async def half_request(port: int) -> asyncio.StreamWriter | None:
    """A connection that sends half a request line and then nothing; None if it could not even be opened."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    writer.write(b"GET /oauth/callback?state=")
    return writer


def enough_descriptors_for_the_flood() -> None:
    """This test process holds the flood's client ends (and the sandbox's connections) itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * FLOOD
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def test_a_flood_of_idle_half_requests_on_the_port_never_starves_the_chat(
    platform: Sandbox, tmp_path: Path
) -> None:
    enough_descriptors_for_the_flood()
    port = free_port()
    user = new_user(platform)
    calendar_id = new_calendar(platform, user)
    async with bot_with(platform, user_env(platform, tmp_path, port), BOT_OPEN_FILES) as bot:
        flood = await asyncio.gather(*(half_request(port) for _ in range(FLOOD)))
        try:
            # the first command after the start: every DingTalk call and the reply need new connections
            _, reply = await converse(platform, platform.chat(f"unsubscribe {calendar_id}", user.staff_id))
            assert "Connect your DingTalk account" in card(reply)["title"]
            await bot.wait_log("OAuth port full: new connections closed")

            # the idle ones are closed by the bot within its header timeout; then a browser gets through
            health = await _health_within(port, seconds=15)
            assert health.text == "ok\n" and health.headers["X-Content-Type-Options"] == "nosniff"
        finally:
            for writer in flood:
                if writer is not None:
                    writer.close()
        handled = bot.logs("message handled")
        assert [entry["route"] for entry in handled] == ["webhook"]
        assert "Too many open files" not in bot.output


async def _health_within(port: int, seconds: float) -> httpx.Response:
    """The health check's answer, asked again until it comes or the deadline passes."""
    deadline = asyncio.get_running_loop().time() + seconds
    async with httpx.AsyncClient() as browser:
        while True:
            try:
                return await browser.get(f"http://127.0.0.1:{port}/", timeout=1)
            except httpx.HTTPError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def test_a_store_that_fails_gets_the_bots_own_page_and_no_code_is_exchanged_without_it(
    platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    env = {**user_env(platform, tmp_path, port), "REDIS_URL": redis_server.url}
    saving, unsaved = new_user(platform), new_user(platform)
    async with bot_with(platform, env) as bot:
        callbacks = []
        for user in (saving, unsaved):
            link = await connect_link(platform, user, f"unsubscribe {new_calendar(platform, user)}")
            callbacks.append(await consent(platform, link, user))

        # the store fails while the first grant is being saved (the code exchange is under way)
        platform.api_latency["userAccessToken"] = 0.5
        exchanges = len(platform.calls("userAccessToken"))
        page = asyncio.create_task(browse(callbacks[0], "zh-CN,zh;q=0.9"))
        await platform.wait_for(lambda: len(platform.calls("userAccessToken")) > exchanges)
        redis_server.stop()
        saved = await page

        # the store is still down when the second browser comes back: its code is never exchanged
        exchanges = len(platform.calls("userAccessToken"))
        refused = await browse(callbacks[1], "en-US")

        assert len(platform.calls("userAccessToken")) == exchanges
        for answer, words in ((saved, "机器人暂时无法保存你的连接"), (refused, "cannot store your connection")):
            assert answer.status_code == 503 and words in answer.text
            assert answer.headers["content-type"].startswith("text/html")
            assert {key: answer.headers[key] for key in PAGE_HEADERS} == PAGE_HEADERS
            assert "Traceback" not in answer.text and "Redis" not in answer.text
        await bot.wait_log("the OAuth redirect failed: the browser was asked to try again")


MALFORMED = [
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % number for number in range(100)) + b"\r\n",  # too many headers
    b"GET /oauth/callback?state=" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",  # request line too long
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello on the plain port
]


async def refused_at_once(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_requests_that_are_not_http_are_refused_with_a_warning_a_minute_not_an_error_each(
    platform: Sandbox, tmp_path: Path
) -> None:
    port = free_port()
    async with bot_with(platform, user_env(platform, tmp_path, port)) as bot:
        answers = [await refused_at_once(port, request) for request in MALFORMED * 25]
        health = await _health_within(port, seconds=5)
        await bot.wait_log("OAuth port: requests that are not HTTP refused")

    assert all(answer.startswith(b"HTTP/1.0 400 ") for answer in answers if answer) and health.text == "ok\n"
    port_lines = [line for line in bot.lines if "aiohttp" in line or "not HTTP" in line]
    assert len(port_lines) == 1 and json.loads(port_lines[0])["level"] == "warning"  # a scanner pages nobody
    assert "Traceback" not in bot.output and "aaaaaaaa" not in bot.output  # what they sent is not echoed
