"""Never lose or double an action: fault injection through the real bot and the sandbox."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import card, converse, new_calendar, new_user, running_bot, started_sandbox, unsubscribe_calls

pytestmark = pytest.mark.usefixtures("bot")
COMMAND_TIMEOUT = 5.0
ENV = {
    "BOT_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
    "BOT_STREAM_PING_SECONDS": "0.5",  # so a half-open socket is found within about a second
    "BOT_HEARTBEAT_SECONDS": "0.5",
    "BOT_STREAM_RETRY_SECONDS": "0.1",  # the drops these tests cause come back within a tenth of a second
}
CHATBOT = "/v1.0/im/bot/messages/get"
THROTTLE = {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "app qps limit"}


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(scope="module")
async def bot(sandbox: Sandbox) -> AsyncIterator[BotProcess]:
    async with running_bot(sandbox, ENV) as process:
        yield process
        assert await process.stop() == 0


async def test_a_duplicate_during_and_after_handling_is_acked_but_acted_on_once(
    sandbox: Sandbox, bot: BotProcess
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
    sandbox.latency = 0.3  # the first copy is still being handled when the second arrives

    first = await sandbox.push(data)
    await sandbox.wait_ack(first)
    second = await sandbox.push(data)
    await sandbox.wait_ack(second)
    assert sandbox.replies_to(data) == []  # both ACKed before the slow work finished
    await sandbox.wait_reply(data)
    third = await sandbox.push(data)
    await sandbox.wait_ack(third)
    await converse(sandbox, sandbox.chat("help", user.staff_id))

    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    assert len(sandbox.replies_to(data)) == 1
    dropped = [e for e in bot.logs("duplicate message dropped") if e["msg_id"] == data["msgId"]]
    assert len(dropped) == 2


async def test_throttling_answers_are_waited_out_and_the_command_succeeds(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.fail_next("user/get", 200, {"errcode": 90018, "errmsg": "app qps limit"})
    sandbox.fail_next("unsubscribe", 403, THROTTLE, times=2)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "✅ Unsubscribed"
    calls = unsubscribe_calls(sandbox, user.union_id)
    assert len(calls) == 3
    assert all(later.received_at - earlier.received_at >= 1.0 for earlier, later in itertools.pairwise(calls))
    entry = await bot.wait_log("message handled", msg_id=data["msgId"])
    assert entry["retries"] == 3 and entry["outcome"] == "unsubscribed"


@pytest.mark.parametrize("failure", [(500, {"code": "internalError"}), (503, "<html>busy</html>")])
async def test_a_dingtalk_that_keeps_failing_is_given_up_on_within_the_command_timeout(
    sandbox: Sandbox, bot: BotProcess, failure: tuple[int, object]
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.fail_next("unsubscribe", *failure, times=1000)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "⏳ DingTalk is busy"
    calls = unsubscribe_calls(sandbox, user.union_id)
    assert len(calls) >= 3
    assert reply.received_at - calls[0].received_at < COMMAND_TIMEOUT
    entry = await bot.wait_log("message handled", msg_id=data["msgId"])
    assert entry["outcome"] == "temporary_problem" and entry["retries"] == len(calls) - 1


async def test_a_users_own_error_is_never_retried(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    sandbox.add_calendar("cal-not-for-you", "Board", scope={"someone-else"})

    _, reply = await converse(sandbox, sandbox.chat("unsubscribe cal-not-for-you", user.staff_id))

    assert card(reply)["title"] == "🚫 Not in this calendar's subscription scope"
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1


async def test_a_burst_of_100_commands_stays_under_dingtalks_real_limit_and_all_succeed(sandbox: Sandbox) -> None:
    # Five seconds' worth of calls at 20 per second: well past the limit, and well inside two command budgets (10 s)
    # even on a loaded machine (200 commands, 10.5 s of slots, ran out of time once under load).
    sandbox.qps_limit = 20
    users = [new_user(sandbox) for _ in range(100)]
    messages = [sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id) for user in users]
    throttled_before = sandbox.throttled

    acks = [await sandbox.push(data) for data in messages]
    for message_id in acks:
        await sandbox.wait_ack(message_id, timeout=5)
    replies = [await sandbox.wait_reply(data, timeout=60) for data in messages]

    assert [card(reply)["title"] for reply in replies] == ["✅ Unsubscribed"] * 100
    assert sandbox.throttled == throttled_before == 0
    assert all(not sandbox.subscriptions[user.union_id] for user in users)


async def test_a_sender_over_ten_commands_a_minute_is_told_to_slow_down_once(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    lists = [sandbox.chat("list", user.staff_id) for _ in range(12)]

    replies = [(await converse(sandbox, data))[1] for data in lists[:11]]
    dropped = await sandbox.push(lists[11])
    await sandbox.wait_ack(dropped)
    await bot.wait_log("message dropped: sender over the rate limit", msg_id=lists[11]["msgId"])

    assert [card(reply)["title"] for reply in replies[:10]] == ["📭 No subscribed calendars"] * 10
    assert card(replies[10])["title"] == "🐢 Slow down, please"
    assert len([r for r in sandbox.calls("calendars") if user.union_id in r.raw_path]) == 10
    assert sandbox.replies_to(lists[11]) == []


async def test_the_bot_reconnects_after_dingtalk_closes_the_socket(sandbox: Sandbox, bot: BotProcess) -> None:
    opened = len(sandbox.calls("gateway"))
    await sandbox.drop_connections()
    await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) > opened)
    await sandbox.wait_connected()

    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    assert card(reply)["title"] == "📅 Calendar bot"


async def test_a_disconnect_request_opens_the_new_connection_before_the_old_one_goes(sandbox: Sandbox) -> None:
    await sandbox.wait_connected()
    assert sandbox.connections == 1
    await sandbox.disconnect()

    await sandbox.wait_connected(count=2)  # both open at once
    user = new_user(sandbox)
    on_old = sandbox.chat("help", user.staff_id)
    on_new = sandbox.chat("帮助", user.staff_id)
    await sandbox.push(on_old, socket=0)  # a frame still arriving on the old connection is not lost
    await sandbox.push(on_new, socket=1)
    assert card(await sandbox.wait_reply(on_old))["title"] == "📅 Calendar bot"
    assert card(await sandbox.wait_reply(on_new))["title"] == "📅 日历机器人"

    await sandbox.drop_connections()  # DingTalk closes both; the bot comes back
    await sandbox.wait_connected()
    assert sandbox.connections == 1


async def test_a_silent_half_open_connection_is_detected_and_replaced(sandbox: Sandbox) -> None:
    sandbox.silent_connections = 1
    opened = len(sandbox.calls("gateway"))
    await sandbox.drop_connections()

    await sandbox.wait_for(lambda: len(sandbox.calls("gateway")) >= opened + 2, timeout=15)
    await sandbox.wait_for(lambda: sandbox.connections == 1 and sandbox.silent_connections == 0)
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    assert card(reply)["title"] == "📅 Calendar bot"


async def test_a_redirect_from_a_webhook_is_not_followed(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    elsewhere = f"{sandbox.base_url}/robot/sendBySession?session=redirected"
    sandbox.fail_next("webhook", 302, {}, headers={"Location": elsewhere})
    data = sandbox.chat("help", user.staff_id)

    await converse(sandbox, data)
    [fallback] = await sandbox.wait_for(lambda: [r for r in sandbox.replies_to(data) if r.api == "batchSend"])

    assert json.loads(fallback.json()["msgParam"])["title"] == "📅 Calendar bot"
    assert [r.api for r in sandbox.replies_to(data)] == ["webhook", "batchSend"]
    assert not [r for r in sandbox.requests if r.raw_path.endswith("session=redirected")]


HOSTILE_TEXTS = [
    "x" * 20_000,
    "unsubscribe " + "y" * 20_000,
    "   \t\n ",
    "\u0000\u0007\u001b[31m unsubscribe",
    "unsubscribe 🎉\u202ecal\u200f",
    "unsubscribe {{7*7}}{% for x in range(9) %}x{% endfor %}",
    "unsubscribe <script>alert(1)</script>[x](javascript:alert(1))",
    "unsubscribe @all **bold** # heading",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
async def test_hostile_text_gets_a_useful_card_and_nothing_unescaped(
    sandbox: Sandbox, bot: BotProcess, text: str
) -> None:
    user = new_user(sandbox)
    data = sandbox.chat(text, user.staff_id)

    _, reply = await converse(sandbox, data)

    shown = card(reply)
    assert shown["title"] and len(shown["text"]) < 5000
    for live in ("<script>", "](javascript", "\u202e", "\u0000"):
        assert live not in shown["text"]
    if "{{7*7}}" in text:
        assert r"**{{7\*7}}{% for x in range\(9\) %}x{% endfor %}**" in shown["text"]  # shown, never evaluated
    entry = await bot.wait_log("message handled", msg_id=data["msgId"])
    assert entry["route"] == "webhook"


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "audio", "content": {"downloadCode": "d", "duration": 3}},
        {"msgtype": "audio", "content": {"downloadCode": "d", "duration": 3, "recognition": ["unsubscribe x"]}},
        {"msgtype": "file", "content": {"downloadCode": "d", "fileName": "a.pdf"}},
        {"msgtype": "video", "content": {"downloadCode": "d", "duration": 3, "videoType": "mp4"}},
        {"msgtype": "richText", "content": {"richText": [{"downloadCode": "d", "type": "picture"}]}},
        {"msgtype": "text", "text": "not an object"},
        {"msgtype": None, "text": None},
    ],
    ids=[
        "audio-unrecognised",
        "audio-recognition-not-text",
        "file",
        "video",
        "richText-picture-only",
        "text-not-object",
        "no-type",
    ],
)
async def test_messages_without_usable_text_get_the_help_card(sandbox: Sandbox, content: dict[str, object]) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("ignored", user.staff_id)
    data.pop("text")
    data.update(content)

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "📅 日历机器人"


async def test_broken_frames_are_acked_or_skipped_and_the_bot_keeps_serving(sandbox: Sandbox, bot: BotProcess) -> None:
    frames = [
        "",
        "[]",
        "null",
        '{"type": "CALLBACK"}',
        '{"type": "CALLBACK", "headers": {"messageId": "no-topic"}}',
        json.dumps({"type": "CALLBACK", "headers": {"messageId": "array-data", "topic": CHATBOT}, "data": "[]"}),
        json.dumps({"type": "CALLBACK", "headers": {"messageId": "no-data", "topic": CHATBOT}}),
        json.dumps({"type": "CALLBACK", "headers": {"messageId": "empty-payload", "topic": CHATBOT}, "data": "{}"}),
        '{"type": "SYSTEM", "headers": {"messageId": "odd-system", "topic": "who-knows"}, "data": "7"}',
        '{"type": "SOMETHING", "headers": {"messageId": "odd-type", "topic": "x"}}',
        "\u00ff" * 10,
    ]
    for frame in frames:
        await sandbox.push_raw(frame)
    for message_id in ("no-topic", "array-data", "no-data", "empty-payload", "odd-system", "odd-type"):
        assert (await sandbox.wait_ack(message_id))["headers"]["messageId"] == message_id

    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    assert card(reply)["title"] == "📅 Calendar bot"
    assert "Traceback" not in bot.output


async def test_each_calendar_change_is_audited_and_a_heartbeat_counts(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
    await converse(sandbox, data)

    audit = await bot.wait_log("calendar change", msg_id=data["msgId"])
    assert audit["action"] == "unsubscribe" and audit["result"] == "unsubscribed"
    assert (audit["staff_id"], audit["union_id"], audit["calendar_id"]) == (user.staff_id, user.union_id, calendar_id)
    assert audit["request_id"]
    handled = await bot.wait_log("message handled", msg_id=data["msgId"])
    assert {"msg_id", "command", "outcome", "code", "request_id", "attempts", "retries", "latency_ms"} <= set(handled)

    beat = await bot.wait_log("heartbeat", timeout=5)
    assert {"handled", "failed", "retried", "deduplicated", "in_flight", "reconnects"} <= set(beat)


async def test_messages_beyond_max_in_flight_queue_in_order_without_delaying_acks() -> None:
    async with started_sandbox() as sandbox, running_bot(sandbox, {"BOT_MAX_IN_FLIGHT": "3"}):
        sandbox.latency = 0.2
        users = [new_user(sandbox) for _ in range(12)]
        messages = [sandbox.chat("list", user.staff_id) for user in users]
        message_ids = [await sandbox.push(data) for data in messages]
        for message_id in message_ids:
            await sandbox.wait_ack(message_id, timeout=2)
        assert sandbox.replies_to(messages[-1]) == []  # every ACK came before the queue was through
        replies = [await sandbox.wait_reply(data, timeout=30) for data in messages]

        assert sandbox.max_concurrent <= 3
        lookups = [json.loads(r.body)["userid"] for r in sandbox.calls("user/get")]
        assert lookups == [user.staff_id for user in users]  # handled in arrival order
        assert all(card(reply)["title"] == "📭 No subscribed calendars" for reply in replies)
