"""Two `python -m bot` processes with the same DYNO on one Redis (a restart or deploy overlapping the old process)."""

from __future__ import annotations

import signal
import time
from typing import Any

from bot.sandbox.platform import Sandbox
from tests.helpers import card, new_calendar, new_user, running_process, started_sandbox, unsubscribe_calls
from tests.redisserver import RedisServer

CLAIM_SECONDS = 3.0  # short for the test; a live process renews its entries every quarter of it


def env(redis_server: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": redis_server.url, "DYNO": "worker.1", "BOT_JOURNAL_CLAIM_SECONDS": str(CLAIM_SECONDS)}


async def unsubscribe_in_flight(sandbox: Sandbox) -> tuple[dict[str, Any], str, str]:
    """A command the first process is busy with: its unsubscribe call has reached DingTalk, which holds it."""
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
    sandbox.api_latency = {"unsubscribe": 4.0}
    await sandbox.push(data, socket=0)
    await sandbox.wait_for(lambda: unsubscribe_calls(sandbox, user.union_id))
    return data, user.union_id, calendar_id


async def test_a_new_process_with_the_same_dyno_leaves_the_running_ones_command_alone(
    redis_server: RedisServer,
) -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, env(redis_server)) as first:
        data, union_id, calendar_id = await unsubscribe_in_flight(sandbox)
        async with running_process(sandbox, env(redis_server), connections=2) as second:
            await sandbox.wait_reply(data)  # the first process answers once DingTalk has finished
            assert await first.stop() == 0
            assert await second.stop() == 0  # anything it had resumed would be finished (and sent) before it exits

        assert len(sandbox.replies_to(data)) == 1
        assert card(sandbox.replies_to(data)[0])["title"] == "✅ Unsubscribed"
        assert len(unsubscribe_calls(sandbox, union_id)) == 1
        assert calendar_id not in sandbox.subscriptions[union_id]
        [waiting] = second.logs("unfinished commands of other processes: taken over if they stay idle")
        assert waiting["count"] == 1 and waiting["claim_seconds"] == CLAIM_SECONDS
        assert not second.logs("took over unfinished commands another dyno left")


async def test_a_new_process_takes_over_the_command_of_a_killed_one_once_it_is_idle(
    redis_server: RedisServer,
) -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, env(redis_server)) as first:
        data, union_id, calendar_id = await unsubscribe_in_flight(sandbox)
        async with running_process(sandbox, env(redis_server), connections=2) as second:
            first.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            assert await first.wait() == -signal.SIGKILL
            sandbox.api_latency = {}
            reply = await sandbox.wait_reply(data, timeout=4 * CLAIM_SECONDS + 10)
            # its entry was renewed at most a quarter of the claim time before the kill
            assert reply.received_at - killed_at >= 0.75 * CLAIM_SECONDS
            await second.wait_log("took over unfinished commands another dyno left", count=1)
            assert await second.stop() == 0

        assert len(sandbox.replies_to(data)) == 1
        assert card(reply)["title"] == "✅ Unsubscribed"
        assert calendar_id not in sandbox.subscriptions[union_id]
