"""Attack: a one-text unsubscribe (no task, no shield) stopped mid-change, through the real `python -m bot`."""

from __future__ import annotations

import asyncio

from tests.helpers import answered_after, card, new_calendar, new_user, running_process, started_sandbox, unsubscribe_calls


async def test_a_command_timeout_mid_change_sends_one_card_and_the_bot_goes_on() -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "2"}) as bot:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.api_latency = {"unsubscribe": 6.0}
        data = sandbox.chat("unsubscribe Team Lunch", user.staff_id)  # typed: list, then the change
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data, timeout=15)
        print(card(reply))
        await asyncio.sleep(6)
        sandbox.api_latency = {}
        await answered_after(sandbox, user.staff_id)
        replies = [card(r)["title"] for r in sandbox.replies_to(data)]
        print("replies", replies)
        print("calls", len(unsubscribe_calls(sandbox, user.union_id)))
        print([line for line in bot.output.splitlines() if "error" in line.lower() or "warning" in line.lower()][:20])


async def test_sigterm_past_the_grace_mid_change_then_restart_one_card_change_done(tmp_path) -> None:
    import signal
    import time

    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "60", "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.api_latency = {"unsubscribe": 40.0}
        data = sandbox.chat("unsubscribe Team Lunch", user.staff_id)  # one text: list, then the change inline
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: len(unsubscribe_calls(sandbox, user.union_id)) == 1, timeout=10)
            first.signal(signal.SIGTERM)
            began = time.monotonic()
            code = await first.wait(timeout=40)
            print("exit", code, round(time.monotonic() - began, 1))
            print([line for line in first.output.splitlines() if '"warning"' in line or '"error"' in line][:20])
        print("replies after first", [card(r)["title"] for r in sandbox.replies_to(data)])
        sandbox.api_latency = {}
        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.replies_to(data), timeout=30)
            await answered_after(sandbox, user.staff_id)
            print([line for line in second.output.splitlines() if "resum" in line][:5])
        print("replies", [card(r)["title"] for r in sandbox.replies_to(data)])
        print("calls", len(unsubscribe_calls(sandbox, user.union_id)), "subs", sandbox.subscriptions[user.union_id])
        assert [card(r)["title"] for r in sandbox.replies_to(data)] == ["✅ Unsubscribed"]
