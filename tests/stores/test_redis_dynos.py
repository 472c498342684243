"""Two dynos sharing state through a real Redis: no double action, one token, shared limits, failover, TLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox, unsubscribe_calls
from tests.redisserver import RedisServer


@pytest_asyncio.fixture(scope="module")
async def redis_server() -> AsyncIterator[RedisServer]:
    server = await RedisServer().start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(scope="module")
async def dynos(sandbox: Sandbox, redis_server: RedisServer) -> AsyncIterator[list[BotProcess]]:
    env = {"REDIS_URL": redis_server.url, "LOG_LEVEL": "DEBUG"}
    async with running_bot(sandbox, env) as first, running_bot(sandbox, env, connections=2) as second:
        yield [first, second]
        assert await first.stop() == 0
        assert await second.stop() == 0


async def test_a_message_pushed_to_both_dynos_is_acted_on_once(sandbox: Sandbox, dynos: list[BotProcess]) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
    sandbox.latency = 0.2

    to_first = await sandbox.push(data, socket=0)
    to_second = await sandbox.push(data, socket=1)
    assert (await sandbox.wait_ack(to_first))["code"] == 200
    assert (await sandbox.wait_ack(to_second))["code"] == 200
    await sandbox.wait_reply(data)
    await converse(sandbox, sandbox.chat("help", user.staff_id))

    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    assert len(sandbox.replies_to(data)) == 1
    # the shared journal drops the copy before its ACK; admission would drop it later
    dropped = ("duplicate message dropped", "message taken by another dyno")
    taken = [d for d in dynos if [e for event in dropped for e in d.logs(event) if e["msg_id"] == data["msgId"]]]
    assert len(taken) == 1


async def test_both_dynos_share_one_token_and_the_union_id_cache(sandbox: Sandbox, dynos: list[BotProcess]) -> None:
    user = new_user(sandbox)
    first, second = new_calendar(sandbox, user), new_calendar(sandbox, user)

    await converse(sandbox, sandbox.chat(f"unsubscribe {first}", user.staff_id), socket=0)
    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {second}", user.staff_id), socket=1)

    assert card(reply)["title"] == "✅ Unsubscribed"
    assert len(sandbox.calls("accessToken")) == 1
    assert [json.loads(r.body) for r in sandbox.calls("user/get")].count({"userid": user.staff_id}) == 1


async def test_the_per_api_limit_holds_for_both_dynos_together(sandbox: Sandbox, dynos: list[BotProcess]) -> None:
    sandbox.qps_limit = 20
    users = [new_user(sandbox) for _ in range(120)]
    messages = [sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id) for user in users]
    throttled_before = sandbox.throttled

    for number, data in enumerate(messages):
        await sandbox.push(data, socket=number % 2)
    replies = [await sandbox.wait_reply(data, timeout=60) for data in messages]

    assert [card(reply)["title"] for reply in replies] == ["✅ Unsubscribed"] * len(messages)
    assert sandbox.throttled == throttled_before == 0

    def handled_by() -> list[int]:
        return [len([e for e in d.logs("message handled") if e["command"] == "unsubscribe"]) for d in dynos]

    # a dyno logs "message handled" once the entry is crossed out in the journal, just after the card
    for _ in range(500):
        if all(count >= 60 for count in handled_by()):
            break
        await asyncio.sleep(0.01)
    assert all(count >= 60 for count in handled_by())


async def test_the_per_user_limit_counts_commands_on_both_dynos(sandbox: Sandbox, dynos: list[BotProcess]) -> None:
    user = new_user(sandbox)
    replies = []
    for number in range(11):
        _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id), socket=number % 2)
        replies.append(card(reply)["title"])

    assert replies == ["📅 Calendar bot"] * 10 + ["🐢 Slow down, please"]


async def test_without_redis_the_bot_keeps_answering_and_uses_redis_again_when_it_is_back() -> None:
    server = await RedisServer().start()
    try:
        async with started_sandbox() as sandbox, running_bot(sandbox, {"REDIS_URL": server.url}) as process:
            await _help(sandbox)
            server.stop()

            for _ in range(3):
                await _help(sandbox)
            await process.wait_log("redis unavailable: using in-process state")

            await server.start()
            for _ in range(100):  # the bot tries Redis again a few seconds after it failed
                data = await _help(sandbox)
                if process.logs("redis reachable again: state is shared across dynos"):
                    break
                await asyncio.sleep(0.1)
            client = server.client()
            assert await client.exists(f"calbot:{sandbox.client_id}:msg:{data['msgId']}") == 1
            await client.aclose()
            assert await process.stop() == 0
    finally:
        server.stop()


async def test_rediss_with_a_self_signed_certificate_works() -> None:
    server = await RedisServer(tls=True).start()
    try:
        async with started_sandbox() as sandbox, running_bot(sandbox, {"REDIS_URL": server.url}) as process:
            data = sandbox.chat("help", new_user(sandbox).staff_id)
            _, reply = await converse(sandbox, data)

            assert card(reply)["title"] == "📅 Calendar bot"
            client = server.client()
            assert await client.exists(f"calbot:{sandbox.client_id}:msg:{data['msgId']}") == 1
            await client.aclose()
            assert process.logs("redis unavailable: using in-process state") == []
    finally:
        server.stop()


async def _help(sandbox: Sandbox) -> dict[str, Any]:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id)
    _, reply = await converse(sandbox, data)
    assert card(reply)["title"] == "📅 Calendar bot"
    return data
