"""The Stream connection of the real bot: never dies, never goes deaf, explains itself to the admin."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from bot.sandbox.answers import huge_answer, raw_answer
from bot.sandbox.platform import Sandbox
from bot.stream.gateway import EndpointRefused, check_endpoint
from bot.stream.transport import _backoff
from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox

# Reconnects come back within a twentieth of a second here, so the tests of failing connections stay quick.
ENV = {"LOG_LEVEL": "DEBUG", "BOT_STREAM_RETRY_SECONDS": "0.05"}
CHATBOT = "/v1.0/im/bot/messages/get"
REJECTED = "credentials rejected: check DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET"
MAX_FRAME_BYTES = 4 * 2**20


@pytest_asyncio.fixture
async def own_sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


async def help_card(sandbox: Sandbox) -> str:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    title: str = card(reply)["title"]
    return title


# --- DingTalk's documented frames and callbacks ---------------------------------------------------------------------


async def test_a_disconnect_frame_without_a_message_id_opens_the_new_connection_at_once(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    sandbox.disconnect_close_seconds = 4.0  # DingTalk closes the old socket about 10 s later
    async with running_bot(sandbox, ENV) as bot:
        acks = len(sandbox.acks)
        asked = time.monotonic()
        await sandbox.disconnect()

        await sandbox.wait_connected(count=2, timeout=3)  # the new one is open while the old one still is

        assert sandbox.connected_at[-1] - asked < 2.0
        assert len(sandbox.acks) == acks  # a disconnect frame is not ACKed
        assert "frame without a messageId ignored" not in bot.output
        assert await help_card(sandbox) == "📅 Calendar bot"


async def test_a_voice_message_is_a_command(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, voice=True))

    assert card(reply)["title"] == "✅ Unsubscribed"
    assert calendar_id not in sandbox.subscriptions[user.union_id]


async def test_a_callback_over_the_push_quota_is_logged_and_not_answered(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    over_quota = sandbox.chat_over_quota(user.staff_id)

    message_id = await sandbox.push(over_quota)
    await sandbox.wait_ack(message_id)
    entry = await bot.wait_log("chatbot callback carries a DingTalk error, not answered", stream_message_id=message_id)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))  # the next message is answered once

    assert entry["level"] == "warning" and entry["code"] == "20001" and entry["message"]
    assert sandbox.replies_to(over_quota) == []
    assert card(reply)["title"] == "📅 Calendar bot"
    assert not [e for e in bot.logs("message handled") if e["msg_id"] == over_quota["msgId"]]


# --- admin-facing logs ----------------------------------------------------------------------------------------------


async def test_start_up_says_once_which_app_and_hosts_the_bot_uses(sandbox: Sandbox, bot: BotProcess) -> None:
    [starting] = bot.logs("bot starting")

    assert starting["level"] == "info" and starting["client_id"] == sandbox.client_id
    assert starting["api_host"] == starting["oapi_host"] == "127.0.0.1"
    assert sandbox.client_secret not in json.dumps(starting)


async def test_rejected_credentials_are_named_at_every_retry_with_how_long_and_counted_by_the_heartbeat(
    own_sandbox: Sandbox,
) -> None:
    sandbox = own_sandbox
    env = {**sandbox.bot_env(), **ENV, "DINGTALK_CLIENT_SECRET": "wrong-secret-do-not-log"}
    process = await BotProcess({**env, "BOT_HEARTBEAT_SECONDS": "0.2"}).start()
    try:
        await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) >= 4)
        failed = await process.wait_log("stream connection failed", error="DingTalkError")
        beat = await sandbox.wait_for(lambda: [e for e in process.logs("heartbeat") if e["failed_connections"] >= 3])
    finally:
        assert await process.stop() == 0

    assert failed["level"] == "warning" and failed["host"] == "127.0.0.1"
    assert (failed["status"], failed["code"]) == (401, "invalidClientIdOrSecret") and failed["message"]
    failures = process.logs("stream connection failed")
    rejected = process.logs(REJECTED)
    assert len(failures) >= 4 and len(rejected) == len(failures)
    assert all(entry["level"] == "error" for entry in rejected)
    assert [entry["attempts"] for entry in rejected] == list(range(1, len(rejected) + 1))
    waited = [entry["failing_for_seconds"] for entry in rejected]
    assert waited[0] == 0 and waited == sorted(waited) and waited[-1] > 0
    assert beat[0]["failed_connections"] >= 3 and beat[0]["reconnects"] == 0
    assert "wrong-secret-do-not-log" not in process.output


async def test_dingtalks_own_message_is_logged_as_written_whatever_the_secret(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    # a short wrong secret, as typed for a first try: redacting it would cut words out of every line
    process = await BotProcess({**sandbox.bot_env(), **ENV, "DINGTALK_CLIENT_SECRET": "id"}).start()
    try:
        failed = await process.wait_log("stream connection failed", error="DingTalkError")
    finally:
        assert await process.stop() == 0

    assert failed["code"] == "invalidClientIdOrSecret"
    assert failed["message"] == "无效的clientId或者clientSecret"  # the sandbox's, as DingTalk writes it
    assert all(line.startswith("{") and json.loads(line)["event"] for line in process.lines)


async def test_credentials_rejected_again_after_a_good_connection_count_their_time_afresh(
    own_sandbox: Sandbox,
) -> None:
    sandbox = own_sandbox
    auth_failed = {"code": "authFailed", "message": "鉴权失败"}
    sandbox.fail_next("gateway", 401, auth_failed, times=3)
    async with running_bot(sandbox, ENV) as bot:
        sandbox.fail_next("gateway", 401, auth_failed, times=3)
        await sandbox.drop_connections()
        await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) >= 8)
        await sandbox.wait_connected()

        assert len([e for e in bot.logs("stream connection failed") if e.get("code") == "authFailed"]) == 6
        assert [entry["attempts"] for entry in bot.logs(REJECTED)] == [1, 2, 3, 1, 2, 3]
        waited = [entry["failing_for_seconds"] for entry in bot.logs(REJECTED)]
        assert waited[0] == waited[3] == 0 and waited[:3] == sorted(waited[:3]) and waited[3:] == sorted(waited[3:])
        assert waited[2] > 0 and waited[5] > 0


async def test_an_unreachable_host_is_named() -> None:
    port = free_port()
    env = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret", **ENV}
    env["DINGTALK_API_BASE"] = env["DINGTALK_OAPI_BASE"] = f"http://127.0.0.1:{port}"
    process = await BotProcess(env).start()
    try:
        failed = await process.wait_log("stream connection failed")
    finally:
        assert await process.stop() == 0

    assert (failed["error"], failed["host"]) == ("unreachable", "127.0.0.1")
    assert process.logs(REJECTED) == []


async def test_a_gateway_answer_too_large_is_named_as_such_not_as_an_unreachable_host(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    async with running_bot(sandbox, ENV) as bot:
        sandbox.answer_next("gateway", huge_answer(8 * 2**20))
        await sandbox.drop_connections()

        failed = await bot.wait_log("stream connection failed")
        await sandbox.wait_connected()

    assert (failed["error"], failed["host"]) == ("AnswerTooLarge", "127.0.0.1")
    assert "bytes" in failed["message"]


# --- the loop never dies --------------------------------------------------------------------------------------------

BAD_GATEWAY_ANSWERS: list[tuple[Any, str]] = [
    ({}, "DingTalkError"),
    ("<html><body>Service Unavailable</body></html>", "DingTalkError"),
    ({"endpoint": ["ws://x"], "ticket": {"a": 1}}, "DingTalkError"),
    ({"endpoint": "wss://[::1", "ticket": "t"}, "endpoint refused"),
    ({"endpoint": "wss://h:99999/x", "ticket": "t"}, "endpoint refused"),
    ({"endpoint": "wss://" + "a" * 300 + ".dingtalk.com/connect", "ticket": "t"}, "endpoint refused"),
    ({"endpoint": "wss://" + "a" * 64 + ".dingtalk.com:443/connect", "ticket": "t"}, "endpoint refused"),
]


async def test_odd_gateway_answers_are_failed_connections_and_the_bot_comes_back(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    async with running_bot(sandbox, {**ENV, "BOT_STREAM_RETRY_SECONDS": "0.01"}) as bot:  # eight backoffs in a row
        opened = len(sandbox.calls("gateway"))
        bogus_ticket = {"endpoint": f"{sandbox.base_url.replace('http', 'ws')}/connect", "ticket": "not-issued-t1"}
        answers = [*BAD_GATEWAY_ANSWERS, (bogus_ticket, "InvalidStatus")]
        for answer, _ in answers:
            if isinstance(answer, str):
                sandbox.answer_next("gateway", raw_answer(200, answer))
            else:
                sandbox.fail_next("gateway", 200, answer)
        await sandbox.drop_connections()

        await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) == opened + len(answers) + 1)
        await sandbox.wait_connected()
        assert await help_card(sandbox) == "📅 Calendar bot"

        failures = bot.logs("stream connection failed")
        assert [entry["error"] for entry in failures] == [error for _, error in answers]
        assert failures[-1]["code"] == 403 and failures[-1]["host"] == "127.0.0.1"
        assert "not-issued-t1" not in bot.output
        assert all("wss://" not in json.dumps(entry) for entry in failures)  # the host at most, never the URL
        assert "Traceback" not in bot.output


async def test_deeply_nested_frames_are_handled_without_recursing(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    deep = "[" * 1000 + "]" * 1000
    data = sandbox.chat("help", user.staff_id)
    payload = json.dumps(data, ensure_ascii=False).replace(json.dumps(data["msgId"]), deep)
    chatbot_frame = {"type": "CALLBACK", "headers": {"messageId": "deep-msgid", "topic": CHATBOT}, "data": payload}
    ping_data = '{"opaque": ' + deep + ', "other": "x"}'
    ping_frame = {"type": "SYSTEM", "headers": {"messageId": "deep-ping", "topic": "ping"}, "data": ping_data}
    extra = json.dumps({"opaque": "op-1", "echo": "me"})
    ping_with_extra = {"type": "SYSTEM", "headers": {"messageId": "extra-ping", "topic": "ping"}, "data": extra}
    opened = len(sandbox.calls("gateway"))

    for frame in (chatbot_frame, ping_frame, ping_with_extra):
        await sandbox.push_raw(json.dumps(frame))

    reply = await sandbox.wait_reply(data)
    assert card(reply)["title"] == "📅 Calendar bot"
    assert json.loads((await sandbox.wait_ack("deep-ping"))["data"]) == {}
    assert json.loads((await sandbox.wait_ack("extra-ping"))["data"]) == {"opaque": "op-1"}
    assert json.loads((await sandbox.wait_ack("deep-msgid"))["data"]) == {"response": None}
    assert len(sandbox.calls("gateway")) == opened  # the same connection served on
    assert "Traceback" not in bot.output


async def test_a_deeply_nested_robot_code_is_absent_and_the_message_still_answered(
    sandbox: Sandbox, bot: BotProcess
) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1, robotCode="placeholder")
    # Spelled out as text, a list nested this deep recursed past Python's limit: the message was ACKed, then lost.
    payload = json.dumps(data, ensure_ascii=False).replace('"placeholder"', "[" * 990 + "]" * 990)
    frame = {"type": "CALLBACK", "headers": {"messageId": "deep-robot-code", "topic": CHATBOT}, "data": payload}

    await sandbox.push_raw(json.dumps(frame))

    reply = await sandbox.wait_reply(data)
    assert reply.api == "batchSend" and reply.json()["robotCode"] == sandbox.client_id  # odd: the app's own
    assert "Traceback" not in bot.output


async def test_a_frame_over_the_size_limit_is_logged_with_its_size(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    async with running_bot(sandbox, ENV) as bot:
        await sandbox.push_raw(json.dumps({"type": "SYSTEM", "headers": {}, "data": "x" * (MAX_FRAME_BYTES + 10)}))

        entry = await bot.wait_log("stream frame too big, connection closed")
        assert entry["size"] > MAX_FRAME_BYTES and entry["limit"] == MAX_FRAME_BYTES
        await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) == 2)
        await sandbox.wait_connected()
        assert await help_card(sandbox) == "📅 Calendar bot"


@pytest.mark.parametrize("fault", ["disconnect", "drop", "oversized"])
async def test_a_gateway_that_ends_every_connection_at_once_is_not_hammered(own_sandbox: Sandbox, fault: str) -> None:
    sandbox = own_sandbox
    sandbox.disconnect_close_seconds = 0.05
    async with running_bot(sandbox, {**ENV, "BOT_STREAM_RETRY_SECONDS": "0.1"}):
        sandbox.connect_fault = fault
        await sandbox.drop_connections()
        await asyncio.sleep(2.0)  # the window in which connections are counted
        sandbox.connect_fault = ""
        cleared = time.monotonic()
        during = len(sandbox.calls("gateway"))

        # Retrying every 0.1 s would open about 20 connections in the window; backing off opens about 6.
        assert 3 <= during <= 10
        # only a connection opened after the fault ended: one opened during it may still be listed, about to close
        await sandbox.wait_for(lambda: sandbox.connections == 1 and sandbox.connected_at[-1] > cleared)
        assert await help_card(sandbox) == "📅 Calendar bot"


async def test_the_ticket_never_goes_to_an_endpoint_outside_dingtalk(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    received: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append((await reader.read(4096)).decode("latin-1"))
        writer.close()

    same_host = await asyncio.start_server(record, "127.0.0.1", 0)
    other_host = await asyncio.start_server(record, "127.0.0.2", 0)
    same_port, other_port = (server.sockets[0].getsockname()[1] for server in (same_host, other_host))
    foreign = [
        f"ws://127.0.0.1:{same_port}/connect",
        f"ws://127.0.0.2:{other_port}/connect",
        f"wss://127.0.0.2:{other_port}/connect",
        f"ws://127.0.0.1.dingtalk.com@127.0.0.2:{other_port}/connect",
    ]
    try:
        async with running_bot(sandbox, ENV) as bot:
            for endpoint in foreign:
                sandbox.fail_next("gateway", 200, {"endpoint": endpoint, "ticket": "ticket-for-dingtalk-only"})
            await sandbox.drop_connections()
            await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) == len(foreign) + 2)
            await sandbox.wait_connected()
            assert await help_card(sandbox) == "📅 Calendar bot"

            refused = bot.logs("stream connection failed")
            assert [entry["error"] for entry in refused] == ["endpoint refused"] * len(foreign)
            assert [entry["host"] for entry in refused] == ["127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.2"]
            assert received == []
            assert "ticket-for-dingtalk-only" not in bot.output
    finally:
        for server in (same_host, other_host):
            server.close()


# --- the endpoint check, as a pure function -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "api_base"),
    [
        ("wss://wss-open-connection.dingtalk.com:443/connect", "https://api.dingtalk.com"),
        ("wss://wss-open-connection.dingtalk.io/connect", "https://api.dingtalk.io"),
        ("wss://DingTalk.com/connect", "https://api.dingtalk.com"),
        ("ws://127.0.0.1:8080/connect", "http://127.0.0.1:8080"),
        ("wss://gateway.internal:8443/connect", "https://gateway.internal:8443"),
    ],
)
def test_endpoints_on_dingtalk_or_the_configured_host_are_accepted(endpoint: str, api_base: str) -> None:
    assert check_endpoint(endpoint, api_base) == urlsplit(endpoint).hostname


@pytest.mark.parametrize(
    ("endpoint", "api_base", "host"),
    [
        (
            "ws://wss-open-connection.dingtalk.com/connect",
            "https://api.dingtalk.com",
            "wss-open-connection.dingtalk.com",
        ),
        ("wss://dingtalk.com.evil.example/connect", "https://api.dingtalk.com", "dingtalk.com.evil.example"),
        ("wss://evildingtalk.com/connect", "https://api.dingtalk.com", "evildingtalk.com"),
        (
            "https://wss-open-connection.dingtalk.com/connect",
            "https://api.dingtalk.com",
            "wss-open-connection.dingtalk.com",
        ),
        ("wss://127.0.0.1:8080/connect", "http://127.0.0.1:8080", "127.0.0.1"),
        ("ws://127.0.0.1:8081/connect", "http://127.0.0.1:8080", "127.0.0.1"),
        ("ws://gateway.internal:8443/connect", "https://gateway.internal:8443", "gateway.internal"),
        (
            "wss://user:pw@wss-open-connection.dingtalk.com/connect",
            "https://api.dingtalk.com",
            "wss-open-connection.dingtalk.com",
        ),
        ("wss://[::1/connect", "https://api.dingtalk.com", ""),
        ("wss://h.dingtalk.com:99999/x", "https://api.dingtalk.com", ""),
        ("wss://" + "a" * 64 + ".dingtalk.com/connect", "https://api.dingtalk.com", ""),
        ("wss:///connect", "https://api.dingtalk.com", ""),
    ],
)
def test_any_other_endpoint_is_refused_naming_its_host_only(endpoint: str, api_base: str, host: str) -> None:
    with pytest.raises(EndpointRefused) as refused:
        check_endpoint(endpoint, api_base)

    assert refused.value.host == host


@pytest.mark.parametrize(("failures", "low", "high"), [(0, 0.5, 1.0), (1, 0.5, 1.0), (3, 2.0, 4.0), (20, 30.0, 60.0)])
def test_reconnect_backoff_starts_within_a_second_and_is_capped_at_a_minute(
    failures: int, low: float, high: float
) -> None:
    for _ in range(50):
        assert low <= _backoff(failures) <= high
