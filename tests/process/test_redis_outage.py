"""Redis paused (SIGSTOP) while a command's calendar change begins, the process killed during the change."""

from __future__ import annotations

import asyncio
import os
import signal

from tests.helpers import card, new_calendar, new_user, running_process, started_sandbox
from tests.redisserver import RedisServer

CLAIM_SECONDS = 2.0  # short for the test
HELD_BACK = "command held back: its step cannot be recorded"


async def test_a_change_begun_while_redis_was_paused_is_not_asked_again_after_a_kill(
    redis_server: RedisServer,
) -> None:
    """The step "the change began" could not be written (Redis stopped answering after the message was journaled),
    the change was asked of DingTalk anyway, and the process died during the call: the dyno that takes the command
    over must not ask again and read DingTalk's "not found" as the command's answer ("Calendar not found" for the
    calendar the first try left). The issue's promise: a Redis outage never repeats a change."""
    env = {
        "REDIS_URL": redis_server.url,
        "DYNO": "worker.1",
        "BOT_JOURNAL_CLAIM_SECONDS": str(CLAIM_SECONDS),
        "BOT_RETRY_PAUSE_SCALE": "0.01",
        "BOT_COMMAND_TIMEOUT": "8",
    }
    pid = redis_server._process.pid if redis_server._process else 0  # the test's own server
    async with started_sandbox(strict_subscriptions=True) as sandbox:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team")
        data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)
        async with running_process(sandbox, env) as first:
            sandbox.api_latency = {"calendars": 1.0}
            sandbox.finish_late("unsubscribe")
            await sandbox.wait_ack(await sandbox.push(data))  # journaled in Redis
            await sandbox.wait_for(lambda: sandbox.calls("calendars"))
            os.kill(pid, signal.SIGSTOP)
            try:  # the change asked for without its step, or held back for whoever resumes the command
                either = {
                    asyncio.ensure_future(sandbox.wait_for(lambda: sandbox.calls("unsubscribe"), timeout=15)),
                    asyncio.ensure_future(first.wait_log(HELD_BACK, timeout=15)),
                }
                done, waiting = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
                [task.result() for task in done]  # a timeout is the test's failure
            finally:
                first.signal(signal.SIGKILL)
                await first.wait()
                os.kill(pid, signal.SIGCONT)
        sandbox.api_latency = {}
        if not sandbox.calls("unsubscribe"):
            sandbox.clear_faults()  # no first try: nothing for DingTalk to finish late
            sandbox.strict_subscriptions = True

        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.delivered(data), timeout=8 * CLAIM_SECONDS + 10)
            await second.wait_log("message handled", msg_id=data["msgId"])

        [reply] = sandbox.delivered(data)
        assert card(reply)["title"] == "✅ Unsubscribed"
        assert calendar_id not in sandbox.subscriptions[user.union_id]
        assert sandbox.repeated_changes == 0
        assert len(sandbox.calls("unsubscribe")) == 1
