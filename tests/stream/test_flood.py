"""One message or one sender must not take the API, the memory or the queue from everyone: through the real process."""

from __future__ import annotations

import asyncio
import itertools
import json

from tests.helpers import (
    BOT_ENV,
    calendar_calls,
    card,
    converse,
    new_calendar,
    new_user,
    running_bot,
    started_sandbox,
    unsubscribe_calls,
)

BUSY = "🚦 The bot is busy"


async def test_waiting_for_rate_limit_slots_ends_within_twice_the_command_budget() -> None:
    env = {**BOT_ENV, "BOT_COMMAND_TIMEOUT": "1", "BOT_API_QPS": "1"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as bot:
        user, behind = new_user(sandbox), new_user(sandbox)
        calendars = [new_calendar(sandbox, user) for _ in range(8)]
        data = sandbox.chat("unsubscribe " + ",".join(calendars), user.staff_id)
        after = sandbox.chat(f"unsubscribe {new_calendar(sandbox, behind)}", behind.staff_id)

        await sandbox.push(data)
        _, later = await converse(sandbox, after)
        reply = await sandbox.wait_reply(data)

        # One call a second: all eight would take seven seconds; the command may wait for slots one second more
        # than its budget of one, then the rest are "DingTalk is busy". The command queued behind them gets that
        # card as well, within the same two seconds, instead of waiting for all eight.
        first_call = calendar_calls(sandbox, user.union_id)[0].received_at
        assert reply.received_at - first_call < 3.5
        text = card(reply)["text"]
        assert "✅ unsubscribed" in text and text.count("⏳ DingTalk is busy") >= 4 and "RateLimitWait" in text
        assert len(unsubscribe_calls(sandbox, user.union_id)) <= 4
        entry = await bot.wait_log("message handled", msg_id=data["msgId"])
        assert entry["outcome"] == "batch" and entry["route"] == "webhook"
        assert card(later)["title"] == "⏳ DingTalk is busy" and "RateLimitWait" in card(later)["text"]
        assert later.received_at - first_call < 3.5


async def test_one_senders_flood_neither_holds_back_another_sender_nor_runs_in_parallel() -> None:
    env = {**BOT_ENV, "BOT_MAX_IN_FLIGHT": "4", "BOT_USER_RATE": "1000"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env):
        sandbox.latency = 0.1
        flooder, other = new_user(sandbox), new_user(sandbox)
        flood = [sandbox.chat("list", flooder.staff_id) for _ in range(12)]
        for data in flood:
            await sandbox.push(data)
        later = sandbox.chat("list", other.staff_id)

        _, reply = await converse(sandbox, later)
        await sandbox.wait_reply(flood[-1], timeout=30)

        assert card(reply)["title"] == "📭 No subscribed calendars"
        listings = [r.raw_path for r in sandbox.calls("calendars")]
        assert listings.index(f"/v1.0/calendar/users/{other.union_id}/calendars") <= 2  # not behind the flood
        flooder_listings = [r.received_at for r in calendar_calls(sandbox, flooder.union_id)]
        # one at a time: each listing starts after the previous one was answered (0.1 s) and its card sent
        assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(flooder_listings))
        answered = [r.raw_path for r in sandbox.calls("webhook") if r.raw_path != reply.raw_path]
        assert answered == [data["sessionWebhook"].removeprefix(sandbox.base_url) for data in flood]  # in order


async def test_beyond_the_inbox_capacity_a_message_gets_a_busy_card_without_any_other_call() -> None:
    env = {**BOT_ENV, "BOT_INBOX_CAPACITY": "3", "BOT_MAX_IN_FLIGHT": "1", "BOT_HEARTBEAT_SECONDS": "0.2"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as bot:
        sandbox.latency = 0.3
        users = [new_user(sandbox) for _ in range(4)]
        handled = [sandbox.chat("list", user.staff_id) for user in users]
        await sandbox.push(handled[0])
        await sandbox.wait_for(lambda: sandbox.calls("user/get"))  # the only worker is busy with it
        for data in handled[1:]:  # three waiting: the inbox is full
            await sandbox.push(data)
        refused_user, another = new_user(sandbox), new_user(sandbox)
        refused = [
            sandbox.chat("list", refused_user.staff_id),
            sandbox.chat("日历", refused_user.staff_id),  # the same sender again: counted, not told twice
            sandbox.chat("日历", another.staff_id),
        ]
        acks = [await sandbox.push(data) for data in refused]

        for message_id in acks:
            await sandbox.wait_ack(message_id)
        sandbox.latency = 0.0  # the inbox was full while they arrived; the rest need not be slow
        busy = [await sandbox.wait_reply(refused[0]), await sandbox.wait_reply(refused[2])]
        replies = [await sandbox.wait_reply(data, timeout=15) for data in handled]

        assert [card(reply)["title"] for reply in busy] == [BUSY, "🚦 机器人繁忙"]
        assert all(card(reply)["title"] == "📭 No subscribed calendars" for reply in replies)
        assert sandbox.replies_to(refused[1]) == []
        lookups = [json.loads(r.body)["userid"] for r in sandbox.calls("user/get")]
        assert lookups == [user.staff_id for user in users]  # nothing was looked up for the refused messages
        assert not calendar_calls(sandbox, refused_user.union_id) and not calendar_calls(sandbox, another.union_id)
        await bot.wait_log("heartbeat", busy_refused=3, handled=4)
        told = [entry["msg_id"] for entry in bot.logs("message refused: too many waiting") if entry["told"]]
        assert sorted(told) == sorted([refused[0]["msgId"], refused[2]["msgId"]])


async def test_one_sender_cannot_fill_the_inbox() -> None:
    async with started_sandbox() as sandbox, running_bot(sandbox, BOT_ENV) as bot:
        sandbox.latency = 0.5
        flooder, other = new_user(sandbox), new_user(sandbox)
        first = sandbox.chat("list", flooder.staff_id)
        await sandbox.push(first)
        await sandbox.wait_for(lambda: sandbox.calls("user/get"))
        flood = [sandbox.chat("list", flooder.staff_id) for _ in range(102)]  # 100 may wait, behind the first
        for data in flood:
            await sandbox.push(data)

        busy = await sandbox.wait_reply(flood[100])
        _, reply = await converse(sandbox, sandbox.chat("list", other.staff_id))  # still served

        assert card(busy)["title"] == BUSY
        assert card(reply)["title"] == "📭 No subscribed calendars"
        sandbox.latency = 0.0
        await bot.wait_log("message dropped: sender over the rate limit", msg_id=flood[99]["msgId"], timeout=20)
        assert sandbox.replies_to(flood[101]) == []
        refusals = bot.logs("message refused: too many waiting")
        assert [entry["msg_id"] for entry in refusals if not entry["told"]] == [flood[101]["msgId"]]
        assert [entry["route"] for entry in refusals if entry["told"]] == ["webhook"]


async def test_the_user_rate_window_is_a_setting() -> None:
    env = {**BOT_ENV, "BOT_USER_RATE": "2", "BOT_USER_RATE_WINDOW": "0.5"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as bot:
        user = new_user(sandbox)
        messages = [sandbox.chat("help", user.staff_id) for _ in range(5)]

        titles = [card((await converse(sandbox, data))[1])["title"] for data in messages[:3]]
        await sandbox.push(messages[3])
        await bot.wait_log("message dropped: sender over the rate limit", msg_id=messages[3]["msgId"])
        await asyncio.sleep(0.5)  # the window the setting asked for
        _, again = await converse(sandbox, messages[4])

        assert titles == ["📅 Calendar bot", "📅 Calendar bot", "🐢 Slow down, please"]
        assert card(again)["title"] == "📅 Calendar bot"


async def test_the_dedupe_window_is_a_setting() -> None:
    async with started_sandbox() as sandbox, running_bot(sandbox, {**BOT_ENV, "BOT_DEDUPE_SECONDS": "0.3"}) as bot:
        user = new_user(sandbox)
        data = sandbox.chat("help", user.staff_id)
        await converse(sandbox, data)
        await sandbox.wait_ack(await sandbox.push(data))
        await bot.wait_log("duplicate message dropped", msg_id=data["msgId"])

        await asyncio.sleep(0.7)  # remembered for at least the window, at most twice it
        await sandbox.wait_ack(await sandbox.push(data))
        await sandbox.wait_for(lambda: len(sandbox.replies_to(data)) == 2)
