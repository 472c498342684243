"""The journal the intake keeps, the real bot in-process: what a stop leaves, a journal that cannot be written,
a finish Redis did not take, a live dyno's slow command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.sandbox.platform import Sandbox
from tests.helpers import (
    DYNO_WARNING,
    card,
    new_calendar,
    new_user,
    running_bot,
    started_sandbox,
    unsubscribe_calls,
)
from tests.helpers_journal import ENV, UNSUBSCRIBED, Held
from tests.redisserver import RedisServer, free_port

NOT_DELIVERED = "card not delivered: every route and retry failed"
UNWRITABLE = "journal cannot be written: serving without durability (a crash now loses the commands in flight)"


def titles(sandbox: Sandbox, data: dict[str, Any]) -> list[str]:
    return [card(reply)["title"] for reply in sandbox.delivered(data)]


async def test_a_card_no_route_took_is_one_error_line_and_the_entry_is_finished(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "DINGTALK_OAPI_BASE": closed, "BOT_COMMAND_TIMEOUT": "1"}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        data = sandbox.chat("help", user.staff_id, sessionWebhook=f"{closed}/robot/sendBySession?session=s1")
        sandbox.fail_next("batchSend", 503, {"code": "ServiceUnavailable", "message": "busy"}, times=1000)
        async with running_bot(sandbox, {**sandbox.bot_env(), **env}) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            handled = await first.wait_log("message handled", msg_id=data["msgId"])
        sandbox.clear_faults()
        async with running_bot(sandbox, {**sandbox.bot_env(), **env}) as second:  # nothing left to resume
            await second.wait_log("stream connected")

        assert handled["route"] == "failed" and len(sandbox.calls("batchSend")) >= 2  # retried while time allowed
        [line] = [entry for entry in first.output.splitlines() if entry.startswith("{") and '"level":"error"' in entry]
        assert NOT_DELIVERED in line and data["msgId"] in line
        assert not second.logs("resuming unfinished commands") and sandbox.delivered(data) == []


async def test_what_a_stop_cannot_finish_stays_in_the_journal_for_the_next_start(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "BOT_COMMAND_TIMEOUT": "60", "BOT_HTTP_TIMEOUT": "60"}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        held = Held()
        sandbox.answer_next("unsubscribe", held)
        async with running_bot(sandbox, env, grace=0.5) as first:  # a stop's grace; SIGTERM's is in process/
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: unsubscribe_calls(sandbox, user.union_id))
            assert await first.stop() == 0
        held.released.set()
        [left] = first.logs("shutdown left messages unfinished: the journal keeps them for the next start")
        assert sandbox.replies_to(data) == []

        async with running_bot(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data))
            resumed = await second.wait_log("resuming unfinished commands")

        assert left["unfinished"] == resumed["count"] == 1
        assert titles(sandbox, data) == [UNSUBSCRIBED]
        assert not sandbox.subscriptions[user.union_id]


async def test_a_live_dynos_slow_command_is_never_taken_over(redis_server: RedisServer) -> None:
    env = {**ENV, "REDIS_URL": redis_server.url, "BOT_JOURNAL_CLAIM_SECONDS": "0.5"}
    async with started_sandbox() as sandbox:
        sandbox.api_latency = {"unsubscribe": 3.0}  # six times the idle time after which a dead dyno's work is taken
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        async with running_bot(sandbox, env) as first, running_bot(sandbox, env, connections=2) as second:
            await sandbox.wait_ack(await sandbox.push(data, socket=0))
            await sandbox.wait_reply(data)
            await first.wait_log("message handled", msg_id=data["msgId"])
            await asyncio.sleep(0.5)

        assert titles(sandbox, data) == [UNSUBSCRIBED]
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
        assert not second.logs("took over unfinished commands another dyno left")


async def test_a_finish_redis_did_not_take_is_kept_and_the_entry_never_taken_over() -> None:
    """The card went out (its step written), then Redis went away: the XACK is retried until it lands, the entry kept
    alive meanwhile, so no other dyno takes over a command already answered."""
    server = await RedisServer(durable=True).start()
    env = {**ENV, "REDIS_URL": server.url, "BOT_JOURNAL_CLAIM_SECONDS": "3"}
    try:
        async with started_sandbox() as sandbox:
            user = new_user(sandbox)
            data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
            held = Held(status=200)
            sandbox.answer_next("webhook", held)
            async with running_bot(sandbox, env) as first, running_bot(sandbox, env, connections=2) as second:
                await sandbox.wait_ack(await sandbox.push(data, socket=0))
                await sandbox.wait_for(lambda: sandbox.replies_to(data))
                server.stop()
                held.released.set()
                await first.wait_log("message handled", msg_id=data["msgId"])  # its finish failed
                await server.start()
                await asyncio.sleep(7.0)  # over twice the claim time: an entry left idle would be taken over now

            assert titles(sandbox, data) == [UNSUBSCRIBED]
            assert not second.logs("took over unfinished commands another dyno left")
            client = server.client()
            try:
                assert await client.xlen(next(iter(await client.keys("calbot:*:journal")))) == 0  # crossed out
            finally:
                await client.aclose()
    finally:
        server.stop()


async def test_a_journal_that_cannot_be_written_is_reported_loudly_and_the_bot_keeps_serving(tmp_path: Path) -> None:
    # the state folder works (a folder the bot cannot use at all stops it at start, see test_store_contract), but the
    # journal's own file cannot be opened: a folder stands where it should be
    (tmp_path / "journal.sqlite3").mkdir()
    async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data)

        assert card(reply)["title"] == UNSUBSCRIBED
        [loud] = bot.logs(UNWRITABLE)
        assert loud["level"] == "error"


async def test_a_heroku_dyno_without_redis_is_warned_that_the_journal_dies_with_it(tmp_path: Path) -> None:
    env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "DYNO": "worker.1"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as bot:
        pass
    [warning] = [entry for entry in bot.logs(DYNO_WARNING)]
    assert warning["level"] == "warning" and warning["dyno"] == "worker.1"
    assert warning["lost_at_restart"] == ["commands in flight (the journal)", "bulk previews", "audit records"]
