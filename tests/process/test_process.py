"""The bot as an operator runs it: configuration errors, secrets kept out of the output, clean shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.sandbox.platform import Sandbox
from tests.botprocess import ROOT, BotProcess
from tests.helpers import new_calendar, new_user, started_sandbox


@pytest_asyncio.fixture
async def own_sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox of its own, for tests that start and stop their own bot process."""
    async with started_sandbox(client_secret="s3cr3t-Value-That-Must-Not-Leak") as platform:
        yield platform


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DINGTALK_CLIENT_SECRET": "y"}, "DINGTALK_CLIENT_ID"),
        ({"DINGTALK_CLIENT_ID": "x"}, "DINGTALK_CLIENT_SECRET"),
        ({"DINGTALK_CLIENT_ID": "x", "DINGTALK_CLIENT_SECRET": "y", "DINGTALK_REGION": "mars"}, "DINGTALK_REGION"),
    ],
)
async def test_bad_configuration_exits_at_once_with_one_line_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    process = await BotProcess(env).start()

    assert await process.wait(timeout=20) == 2
    assert process.lines == []
    [line] = process.stderr.strip().splitlines()
    assert line.startswith("configuration error: ") and named in line and "Traceback" not in line


async def test_no_secret_token_ticket_or_webhook_reaches_the_output(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    process = await BotProcess({**sandbox.bot_env(), "LOG_LEVEL": "DEBUG"}).start()
    await sandbox.wait_connected()
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    messages = [
        sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id),
        sandbox.chat("unsubscribe cal-unknown", user.staff_id, group=True),
        sandbox.chat("help", user.staff_id, webhook_expires_in=-1),
        sandbox.chat("help", "", group=True, sessionWebhook="http://evil.example/x?session=leak-me-please"),
    ]
    sandbox.fail_next("unsubscribe", 500, {"code": "internalError", "message": "boom"})
    for data in messages[:1]:
        await sandbox.push(data)
        await sandbox.wait_reply(data)
    sandbox.expire_tokens()
    for data in messages[1:]:
        await sandbox.push(data)
        await sandbox.wait_reply(data)
    for data in messages:
        await process.wait_log("message handled", msg_id=data["msgId"])

    assert await process.stop() == 0
    output = process.output
    assert len(sandbox.issued_secrets) >= 3
    for secret in [sandbox.client_secret, *sandbox.issued_secrets]:
        assert secret not in output
    for data in messages:
        assert data["sessionWebhook"].partition("?")[2] not in output
    assert "leak-me-please" not in output and "sendBySession" not in output


async def test_sigterm_lets_the_message_in_flight_finish_then_exits_zero(own_sandbox: Sandbox) -> None:
    sandbox = own_sandbox
    process = await BotProcess(sandbox.bot_env()).start()
    await sandbox.wait_connected()
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.latency = 1.0  # every API call takes a second: the command is still running when SIGTERM arrives
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
    message_id = await sandbox.push(data)
    await sandbox.wait_ack(message_id)
    await sandbox.wait_for(lambda: sandbox.calls("accessToken"))

    process.signal(signal.SIGTERM)

    assert await process.wait(timeout=25) == 0
    reply = await sandbox.wait_reply(data, timeout=1)
    assert reply.json()["actionCard"]["title"] == "✅ Unsubscribed"
    assert calendar_id not in sandbox.subscriptions[user.union_id]


async def test_the_demo_plays_its_script_and_exits_zero() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(demo.communicate(), 60)

    assert demo.returncode == 0, stderr.decode()
    text = stdout.decode()
    for title in [
        "📅 Calendar bot",
        "📅 Your subscribed calendars",
        "✅ Unsubscribed",
        "↩ Subscribed again",
        "🤔 Which one?",
        "✅ 已取消订阅",
        "📬 已私聊回复",
        "📋 3 calendars",
        "🚫 Not a subscribed calendar",
        "❓ No calendar called that",
        "✏️ Which calendar?",
        "🔒 The bot lacks a permission",
        "⏳ DingTalk is busy",
        "🏢 Members only",
        "📭 没有订阅的日历",
    ]:
        assert title in text
    assert '(you press [1] ↩ Undo: Company Hol…)\n  you (1:1)> resubscribe "cal-holidays"' in text


async def test_the_interactive_demo_takes_typed_messages_and_button_presses() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "demo",
        "--interactive",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    typed = "list\n1\n2\n/group 帮助\nquit\n"
    stdout, stderr = await asyncio.wait_for(demo.communicate(typed.encode()), 60)

    assert demo.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert "[1] 1. Unsubscribe Comp…" in text  # numbered: two of the demo's calendars share a name
    assert '(you press [1] 1. Unsubscribe Comp…)\n  you (1:1)> unsubscribe "cal-holidays"' in text
    assert "(you press [2] ↩ Undo" not in text and "(no button 2 on the last card)" in text
    assert "you (in the group)> 帮助" in text and "│ 📅 日历机器人" in text and "###" not in text  # a heading, rendered
