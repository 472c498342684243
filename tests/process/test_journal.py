"""An ACKed command is answered exactly once, even when the process dies mid-work: kill -9 through the real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.http import AiohttpTransport
from bot.models import Message
from bot.sandbox.http import Responder
from bot.sandbox.platform import Sandbox
from bot.stores.limiter import MemoryLimiter
from bot.stream.transport import StreamClient
from tests.botprocess import BotProcess
from tests.helpers import (
    answered_after,
    buttons,
    calendar_calls,
    card,
    converse,
    new_calendar,
    new_user,
    pressed,
    running_process,
    started_sandbox,
    unsubscribe_calls,
)
from tests.helpers_journal import ENV, UNSUBSCRIBED, Held, audit_rows, durable_audit_rows
from tests.redisserver import RedisServer, free_port

UNWRITABLE = "journal cannot be written: serving without durability (a crash now loses the commands in flight)"


async def kill(sandbox: Sandbox, process: BotProcess) -> None:
    """SIGKILL: no cleanup of any kind; wait until DingTalk sees the connection gone."""
    process.signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    await sandbox.wait_for(lambda: sandbox.connections == 0)


def titles(sandbox: Sandbox, data: dict[str, Any]) -> list[str]:
    return [card(reply)["title"] for reply in sandbox.delivered(data)]


async def test_fifty_commands_in_flight_survive_kill_9_each_answered_once(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        sandbox.api_latency = {"unsubscribe": 1.0}  # a slow calendar API: every command is mid-call at the kill
        users = [new_user(sandbox) for _ in range(50)]
        messages = [sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id) for user in users]
        async with running_process(sandbox, env) as first:
            for message_id in [await sandbox.push(data) for data in messages]:
                await sandbox.wait_ack(message_id)
            await sandbox.wait_for(lambda: len(sandbox.calls("unsubscribe")) >= 50)
            await kill(sandbox, first)
        assert all(sandbox.replies_to(data) == [] for data in messages)

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: all(sandbox.delivered(data) for data in messages), timeout=30)
            await second.wait_log("resuming unfinished commands", count=50)
            await answered_after(sandbox, *(user.staff_id for user in users))

        assert [titles(sandbox, data) for data in messages] == [[UNSUBSCRIBED]] * 50
        assert all(not sandbox.subscriptions[user.union_id] for user in users)
        assert all(len(unsubscribe_calls(sandbox, user.union_id)) <= 2 for user in users)
        assert "internal_error" not in second.output and "Traceback" not in second.output


async def test_a_kill_between_the_calendar_call_and_the_card_neither_repeats_the_call_nor_the_card(
    tmp_path: Path,
) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user)
        data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
        held = Held(status=200)  # the card reached DingTalk; its answer never reached the bot
        sandbox.answer_next("webhook", held)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: sandbox.replies_to(data))
            await kill(sandbox, first)
        held.released.set()
        calls_before = len(calendar_calls(sandbox, user.union_id))
        # the card step is durable (the restart will not send again): so must the change's record be
        assert durable_audit_rows(tmp_path, data["msgId"]) == {("unsubscribe", calendar_id, "unsubscribed")}

        async with running_process(sandbox, env) as second:
            await second.wait_log("resumed message already answered", msg_id=data["msgId"])
            await answered_after(sandbox, user.staff_id)

        assert titles(sandbox, data) == [UNSUBSCRIBED]
        assert len(sandbox.replies_to(data)) == 1
        assert audit_rows(tmp_path, data["msgId"]) == [("unsubscribe", calendar_id, "unsubscribed")]
        assert len(calendar_calls(sandbox, user.union_id)) == calls_before  # neither listed nor changed again
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 1


async def test_a_kill_during_the_calendar_calls_finds_them_done_and_never_asks_again(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        done, cut_short = new_calendar(sandbox, user, "Done"), new_calendar(sandbox, user, "Cut short")
        held = Held(lambda request: sandbox.subscriptions[user.union_id].discard(cut_short))  # done, never answered
        sandbox.answer_next("unsubscribe", answer_for(sandbox, user.union_id, {cut_short: held}), times=2)
        data = sandbox.chat(f"unsubscribe {done}, {cut_short}", user.staff_id)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await first.wait_log("calendar change", calendar_id=done)
            await sandbox.wait_for(lambda: cut_short not in sandbox.subscriptions[user.union_id])
            await until(lambda: f"{done}/reply" in "\n".join(progress_keys(tmp_path / "journal.sqlite3")))
            await kill(sandbox, first)
        held.released.set()
        before = len(sandbox.requests)

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("message handled", msg_id=data["msgId"])

        calendar_calls_after = [r.api for r in sandbox.requests[before:] if r.path.startswith("/v1.0/calendar/")]
        assert calendar_calls_after == ["calendars"]  # one look whether the cut-short change happened; no more
        [reply] = sandbox.delivered(data)
        assert card(reply)["title"] == "📋 2 calendars"
        assert card(reply)["text"].count("✅ unsubscribed") == 2
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 2  # neither asked again
        assert not sandbox.subscriptions[user.union_id]


async def test_a_resubscribe_cut_short_by_a_kill_finds_it_done(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        sandbox.add_calendar("cal-back", "Back again")
        held = Held(lambda request: sandbox.subscriptions[user.union_id].add("cal-back"))
        sandbox.answer_next("subscribe", held)
        data = sandbox.chat("resubscribe cal-back", user.staff_id)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: sandbox.calls("subscribe"))
            await kill(sandbox, first)
        held.released.set()

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("message handled", msg_id=data["msgId"])

        assert titles(sandbox, data) == ["↩ Subscribed again"]
        assert len(sandbox.calls("subscribe")) == 1


@pytest.mark.parametrize("command", ["unsubscribe", "resubscribe", "confirm"])
async def test_a_change_dingtalk_finishes_after_the_kill_is_read_as_done_when_the_resume_asks_again(
    tmp_path: Path, command: str
) -> None:
    """The resume lists the calendars (unchanged: DingTalk is still at work on the first call), asks again, and
    DingTalk, done with the first call by then, answers "not found / already subscribed": that is the change made."""
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox(strict_subscriptions=True) as sandbox:
        user = new_user(sandbox)
        api = "subscribe" if command == "resubscribe" else "unsubscribe"
        if command == "resubscribe":
            calendar_id = "cal-late"
            sandbox.add_calendar(calendar_id, "Late")
        else:
            calendar_id = new_calendar(sandbox, user, "Late")
        async with running_process(sandbox, env) as first:
            if command == "confirm":
                _, preview = await converse(sandbox, sandbox.chat("unsubscribe all", user.staff_id))
                data = pressed(sandbox, buttons(preview)[0]["actionURL"], user.staff_id)
            else:
                data = sandbox.chat(f"{command} {calendar_id}", user.staff_id)
            sandbox.finish_late(api)
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: sandbox.calls(api))
            await kill(sandbox, first)
        assert (calendar_id in sandbox.subscriptions[user.union_id]) == (api == "unsubscribe")  # not done yet

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("message handled", msg_id=data["msgId"])

        [reply] = sandbox.delivered(data)
        expected = {"unsubscribe": UNSUBSCRIBED, "resubscribe": "↩ Subscribed again", "confirm": "📋 1 calendars"}
        assert card(reply)["title"] == expected[command]
        assert "not found" not in card(reply)["text"]
        assert (calendar_id in sandbox.subscriptions[user.union_id]) == (api == "subscribe")
        assert len(sandbox.calls(api)) == 2  # asked again once: the answer of the second try is the refusal


async def test_a_kill_while_cards_wait_for_a_send_slot_leaves_them_to_be_sent_after_the_restart(tmp_path: Path) -> None:
    """The card step is recorded right before the request is written: commands whose cards were still waiting for
    the robot OpenAPI's rate-limit slot when the process died are answered after the restart; the one whose send
    had begun is not (it may have been delivered)."""
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "BOT_API_QPS": "1"}  # one send a second: the others wait
    async with started_sandbox() as sandbox:
        users = [new_user(sandbox) for _ in range(4)]
        messages = [sandbox.chat("help", user.staff_id, webhook_expires_in=-1) for user in users]  # robot OpenAPI
        held = Held()
        sandbox.answer_next("batchSend", held)
        async with running_process(sandbox, env) as first:
            for message_id in [await sandbox.push(data) for data in messages]:
                await sandbox.wait_ack(message_id)
            await sandbox.wait_for(lambda: sandbox.calls("batchSend"))
            await kill(sandbox, first)
        held.released.set()
        [begun] = [data for data in messages if sandbox.replies_to(data)]

        async with running_process(sandbox, env) as second:
            waiting = [data for data in messages if data is not begun]
            await sandbox.wait_for(lambda: all(sandbox.delivered(data) for data in waiting), timeout=15)
            await second.wait_log("resumed message already answered", msg_id=begun["msgId"])

        assert [len(sandbox.replies_to(data)) for data in messages] == [1, 1, 1, 1]  # never a second copy
        sent = [json.loads(reply.json()["msgParam"])["title"] for data in waiting for reply in sandbox.delivered(data)]
        assert sent == ["📅 Calendar bot"] * 3


async def test_a_card_that_could_not_be_sent_is_sent_after_a_kill_during_its_retries(tmp_path: Path) -> None:
    """Connection refused on the webhook: nothing reached DingTalk, so the card step is written back, and the command
    killed while the webhook is retried is answered after the restart, once."""
    closed = f"http://127.0.0.1:{free_port()}"  # the sessionWebhook's host refuses connections
    # real backoff pauses (a refused try fails at once, the pause lasts 0.1-4 s): the kill lands in a pause
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "DINGTALK_OAPI_BASE": closed, "BOT_COMMAND_TIMEOUT": "30"}
    env["BOT_RETRY_PAUSE_SCALE"] = "1"
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        data = sandbox.chat("help", user.staff_id, sessionWebhook=f"{closed}/robot/sendBySession?session=s1")
        async with running_process(sandbox, {**sandbox.bot_env(), **env}) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await until(lambda: card_step(tmp_path / "journal.sqlite3") == [(b"false",)])  # in a backoff pause
            await kill(sandbox, first)
        assert sandbox.replies_to(data) == []

        # the webhook's half of a 2 s reply runs out soon after the restart: the robot OpenAPI sends the card
        async with running_process(sandbox, {**sandbox.bot_env(), **env, "BOT_COMMAND_TIMEOUT": "2"}) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            handled = await second.wait_log("message handled", msg_id=data["msgId"])

        [card_sent] = sandbox.delivered(data)
        assert card_sent.api == "batchSend" and json.loads(card_sent.json()["msgParam"])["title"] == "📅 Calendar bot"
        assert handled["resumed"] and not second.logs("resumed message already answered")


async def test_a_poison_command_is_parked_after_three_attempts_while_others_flow(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        poisoned = new_user(sandbox)
        poison = sandbox.chat(f"unsubscribe {new_calendar(sandbox, poisoned)}", poisoned.staff_id)
        held = Held()  # each attempt hangs on this call until the process dies
        sandbox.answer_next("unsubscribe", held, times=3)
        others = []
        for attempt in range(1, 4):
            async with running_process(sandbox, env) as process:
                if attempt == 1:
                    await sandbox.wait_ack(await sandbox.push(poison))
                other = sandbox.chat("help", new_user(sandbox).staff_id)
                others.append(other)
                await sandbox.wait_ack(await sandbox.push(other))
                await sandbox.wait_reply(other)
                await sandbox.wait_for(lambda n=attempt: len(unsubscribe_calls(sandbox, poisoned.union_id)) == n)
                await kill(sandbox, process)

        async with running_process(sandbox, env) as last:
            parked = await last.wait_log("journal entry parked: its handling never finished, it is not tried again")
            await sandbox.wait_for(lambda: sandbox.delivered(poison))
            after = sandbox.chat("help", new_user(sandbox).staff_id)
            await sandbox.wait_ack(await sandbox.push(after))
            await sandbox.wait_for(lambda: sandbox.delivered(after))

        held.released.set()
        assert parked["level"] == "error" and parked["msg_id"] == poison["msgId"] and parked["attempts"] == 3
        assert titles(sandbox, poison) == ["⚠️ Something went wrong"]
        assert len(unsubscribe_calls(sandbox, poisoned.union_id)) == 3
        assert [titles(sandbox, other) for other in [*others, after]] == [["📅 Calendar bot"]] * 4


async def test_a_repeated_msgid_during_resume_and_after_it_is_answered_once(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        held = Held()
        sandbox.answer_next("unsubscribe", held)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: unsubscribe_calls(sandbox, user.union_id))
            await kill(sandbox, first)
        held.released.set()

        sandbox.api_latency = {"unsubscribe": 0.5}  # the resumed command is still at work when the repeat comes
        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: len(unsubscribe_calls(sandbox, user.union_id)) == 2)
            repeat = await sandbox.push(data)  # DingTalk delivers the same msgId again
            await sandbox.wait_ack(repeat)
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("duplicate message dropped", msg_id=data["msgId"])
            await second.wait_log("message handled", msg_id=data["msgId"])  # finished: nothing left to resume
            await kill(sandbox, second)

        async with running_process(sandbox, env) as third:  # and once more after a restart, the entry finished
            await sandbox.wait_ack(await sandbox.push(data))
            await third.wait_log("duplicate message dropped", msg_id=data["msgId"])
            await answered_after(sandbox, user.staff_id)

        assert titles(sandbox, data) == [UNSUBSCRIBED]
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 2


async def test_the_ack_waits_for_the_message_to_be_written_down_and_the_reader_does_not() -> None:
    written: dict[str, asyncio.Event] = {}
    ending = asyncio.Event()

    async def accept(message: Message) -> None:  # a journal write that takes as long as the test says
        written[message.msg_id] = asyncio.Event()
        if not ending.is_set():
            await written[message.msg_id].wait()

    async with started_sandbox() as sandbox:
        config = Config.from_env({**sandbox.bot_env(), "BOT_STREAM_RETRY_SECONDS": "0.1"})
        dingtalk = DingTalkClient(config, AiohttpTransport(4), MemoryLimiter(100))
        stream = StreamClient(dingtalk, accept, config)
        running = asyncio.create_task(stream.run())
        try:
            await sandbox.wait_connected()
            slow, quick = sandbox.chat("help", "staff-a"), sandbox.chat("help", "staff-b")
            slow_frame, quick_frame = await sandbox.push(slow), await sandbox.push(quick)

            async def both_read() -> None:
                while not (quick["msgId"] in written and slow["msgId"] in written):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(both_read(), 5)

            written[quick["msgId"]].set()
            await sandbox.wait_ack(quick_frame)  # the next frame was read and ACKed while the first one waits
            assert slow_frame not in sandbox.acks
            written[slow["msgId"]].set()
            await sandbox.wait_ack(slow_frame)
        finally:
            ending.set()
            for event in written.values():
                event.set()
            await stream.stop()
            await running
            await dingtalk.aclose()


async def test_two_dynos_with_redis_the_survivor_finishes_what_the_killed_one_accepted(
    redis_server: RedisServer,
) -> None:
    env = {**ENV, "REDIS_URL": redis_server.url, "BOT_JOURNAL_CLAIM_SECONDS": "1"}
    async with started_sandbox() as sandbox:
        sandbox.api_latency = {"unsubscribe": 1.0}
        users = [new_user(sandbox) for _ in range(20)]
        messages = [sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id) for user in users]
        async with running_process(sandbox, env) as doomed, running_process(sandbox, env, connections=2) as survivor:
            for message_id in [await sandbox.push(data, socket=0) for data in messages]:  # all to the first dyno
                await sandbox.wait_ack(message_id)
            await sandbox.wait_for(lambda: len(sandbox.calls("unsubscribe")) >= 20)
            doomed.signal(signal.SIGKILL)
            assert await doomed.wait() == -signal.SIGKILL

            await sandbox.wait_for(lambda: all(sandbox.delivered(data) for data in messages), timeout=20)
            taken = await survivor.wait_log("took over unfinished commands another dyno left")
            await answered_after(sandbox, *(user.staff_id for user in users))

        assert taken["count"] >= 1
        assert [titles(sandbox, data) for data in messages] == [[UNSUBSCRIBED]] * 20
        assert all(not sandbox.subscriptions[user.union_id] for user in users)
        client = redis_server.client()
        try:
            assert await client.xlen(next(iter(await client.keys("calbot:*:journal")))) == 0  # all crossed out
        finally:
            await client.aclose()


HELD_BACK = "card held back: its step cannot be recorded, the command is left to be resumed"


async def test_a_card_is_never_sent_while_redis_cannot_record_it_so_a_take_over_never_sends_a_second() -> None:
    """Redis goes away while the calendar call is under way; the dyno dies before Redis is back. The card was not
    sent while its step could not be written, so the dyno that takes the command over sends the one card."""
    server = await RedisServer(durable=True).start()
    env = {**ENV, "REDIS_URL": server.url, "BOT_JOURNAL_CLAIM_SECONDS": "1"}
    try:
        async with started_sandbox() as sandbox:
            sandbox.api_latency = {"unsubscribe": 1.0}
            user = new_user(sandbox)
            data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
            async with running_process(sandbox, env) as first, running_process(sandbox, env, connections=2) as second:
                await sandbox.wait_ack(await sandbox.push(data, socket=0))
                await sandbox.wait_for(lambda: unsubscribe_calls(sandbox, user.union_id))
                server.stop()
                await until(lambda: first.logs(HELD_BACK) or sandbox.replies_to(data))
                first.signal(signal.SIGKILL)
                assert await first.wait() == -signal.SIGKILL
                await server.start()
                await sandbox.wait_for(lambda: sandbox.delivered(data), timeout=15)
                await second.wait_log("message handled", msg_id=data["msgId"])
                await answered_after(sandbox, user.staff_id)

            assert titles(sandbox, data) == [UNSUBSCRIBED]
            assert len(unsubscribe_calls(sandbox, user.union_id)) == 1  # the take-over saw the change made
            assert first.logs(UNWRITABLE)[0]["level"] == "error"
    finally:
        server.stop()


def progress_keys(journal: Path) -> list[str]:
    """The steps written down in a journal file, read as another process would."""
    with contextlib.closing(sqlite3.connect(journal)) as connection:
        return [key for (key,) in connection.execute("SELECT key FROM progress")]


def card_step(journal: Path) -> list[tuple[bytes]]:
    """The card steps in a journal file, read as another process would."""
    with contextlib.closing(sqlite3.connect(journal)) as connection:
        return connection.execute("SELECT value FROM progress WHERE key = 'card'").fetchall()


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll a condition the sandbox is not told about (a log line of the bot) until the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def answer_for(sandbox: Sandbox, union_id: str, special: dict[str, Held]) -> Responder:
    """Unsubscribe answers by calendar: those in `special` held, the others DingTalk's success, with its effect."""

    async def respond(request: web.Request) -> web.StreamResponse:
        calendar_id = request.path.split("/")[-2]  # …/calendars/{calendarId}/unsubscribe
        if calendar_id in special:
            return await special[calendar_id](request)
        sandbox.subscriptions[union_id].discard(calendar_id)
        return web.json_response({"result": True}, headers={"x-acs-request-id": "REQ"})

    return respond


async def test_a_resumed_unsubscribe_of_an_id_the_sender_never_followed_is_not_read_as_done(tmp_path: Path) -> None:
    """Killed while asking to leave an id no listing showed (DingTalk knows no such calendar): the resume's listing
    does not show it either, which says nothing about the first try, and DingTalk's "not found" to the second try
    is the answer to the command itself. Never an "Unsubscribed" card for a calendar that does not exist."""
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox(strict_subscriptions=True) as sandbox:
        user = new_user(sandbox)
        followed = new_calendar(sandbox, user, "Kept")
        data = sandbox.chat("unsubscribe cal-nobody-has", user.staff_id)
        async with running_process(sandbox, env) as first:
            sandbox.finish_late("unsubscribe")
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: sandbox.calls("unsubscribe"))
            await kill(sandbox, first)

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            await second.wait_log("message handled", msg_id=data["msgId"])

        [reply] = sandbox.delivered(data)
        assert card(reply)["title"] in ("❓ Calendar not found", "❓ No calendar called that")
        assert sandbox.subscriptions[user.union_id] == {followed}
