"""An unsubscribe stopped mid-change or left unanswered by DingTalk, through the real bot: one card, true, and an audit
that does not say nothing changed."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.helpers import (
    answered_after,
    card,
    converse,
    new_calendar,
    new_user,
    running_process,
    started_sandbox,
    unsubscribe_calls,
)


async def test_a_command_out_of_time_mid_change_sends_one_card_and_the_bot_goes_on() -> None:
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "2"}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as bot:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.api_latency = {"unsubscribe": 6.0}
        data = sandbox.chat("unsubscribe Team Lunch", user.staff_id)  # typed, one text: list, then the change
        await sandbox.wait_ack(await sandbox.push(data))
        await sandbox.wait_reply(data, timeout=15)
        await asyncio.sleep(6)  # the sandbox's answer to the abandoned call is due
        sandbox.api_latency = {}
        await answered_after(sandbox, user.staff_id)

        [reply] = sandbox.replies_to(data)  # exactly one card
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
        assert not [line for line in bot.output.splitlines() if '"level":"error"' in line]
        # the call was written and DingTalk carried it out after the bot stopped waiting: the card must not say
        # that nothing changed (it said "⏳ DingTalk is busy … Nothing was changed for Team Lunch")
        assert calendar_id not in sandbox.subscriptions[user.union_id]
        assert "Nothing was changed" not in card(reply)["text"], card(reply)["text"]


async def test_unanswered_changes_of_several_calendars_say_they_may_have_been_made_and_are_audited_so() -> None:
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "2"}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as bot:
        user = new_user(sandbox)
        lunch, standup = new_calendar(sandbox, user, "Team Lunch"), new_calendar(sandbox, user, "Standup")
        sandbox.api_latency = {"unsubscribe": 6.0}
        data = sandbox.chat(f'unsubscribe "{lunch}", "{standup}"', user.staff_id)  # two texts: the batch card
        await sandbox.wait_ack(await sandbox.push(data))
        await sandbox.wait_reply(data, timeout=15)
        await asyncio.sleep(6)  # DingTalk carries both out after the bot stopped waiting
        sandbox.api_latency = {}
        await answered_after(sandbox, user.staff_id)

        [reply] = sandbox.replies_to(data)
        text = card(reply)["text"]
        assert text.count("the change may have been made") == 2 and "try again" not in text, text
        assert {lunch, standup}.isdisjoint(sandbox.subscriptions[user.union_id])
        for calendar_id in (lunch, standup):
            audit = await bot.wait_log("calendar change", calendar_id=calendar_id)
            assert (audit["result"], audit["code"]) == ("unanswered", "ReadTimeout"), audit


async def test_a_change_dingtalk_made_is_never_said_to_be_unchanged_when_its_retry_runs_out_of_time() -> None:
    # slow DingTalk, the bot's own limit at 1 call a second: each first try goes unanswered (and is carried out),
    # its retry waits for a slot until the command's time is up (RateLimitWait); that retry's failure must not turn
    # the card and the audit back into "nothing changed"
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "3", "BOT_HTTP_TIMEOUT": "1", "BOT_API_QPS": "1"}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as bot:
        user = new_user(sandbox)
        names = [f"Cal {number}" for number in range(4)]
        ids = {name: new_calendar(sandbox, user, name) for name in names}
        sandbox.api_latency = {"unsubscribe": 2.5}
        data = sandbox.chat("unsubscribe " + ", ".join(f'"{ids[name]}"' for name in names), user.staff_id)
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data, timeout=20)
        await asyncio.sleep(4)  # the answers due after the command ended
        sandbox.api_latency = {}

        rows = {line.split("**")[1]: line for line in card(reply)["text"].splitlines() if line.startswith("- **")}
        left = [name for name in names if ids[name] not in sandbox.subscriptions[user.union_id]]
        assert left, "no change was carried out: the test shows nothing"
        for name in left:
            audit = await bot.wait_log("calendar change", calendar_id=ids[name])
            assert audit["result"] == "unanswered", audit
            assert "the change may have been made" in rows[ids[name]], rows


async def test_a_change_retried_with_a_new_token_after_an_unanswered_try_may_still_have_been_made() -> None:
    # the first try goes unanswered (DingTalk does it), the retry's token is rejected, the call is made again with a
    # new token and refused until the command's time is up: the first try's doubt must survive the new token
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "5", "BOT_HTTP_TIMEOUT": "1"}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as bot:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.finish_late("unsubscribe")
        sandbox.fail_next("unsubscribe", 401, {"code": "InvalidAuthentication", "message": "token expired"})
        sandbox.fail_next("unsubscribe", 503, {"code": "ServiceUnavailable", "message": "busy"}, times=100)
        data = sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id)
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data, timeout=15)

        assert calendar_id not in sandbox.subscriptions[user.union_id]
        assert len(sandbox.calls("accessToken")) == 2  # the rejected token was fetched again
        assert "may or may not have been made" in card(reply)["text"], card(reply)["text"]
        audit = await bot.wait_log("calendar change", calendar_id=calendar_id)
        assert (audit["result"], audit["code"]) == ("unanswered", "ServiceUnavailable"), audit


async def test_a_token_that_cannot_be_fetched_does_not_make_a_change_that_may_have_been_made() -> None:
    # the change's token is rejected (nothing done), its new token never comes: the token fetch went unanswered,
    # the change itself was answered; the card must say that nothing changed
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "4", "BOT_HTTP_TIMEOUT": "1"}
    async with started_sandbox() as sandbox, running_process(sandbox, env) as bot:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        await converse(sandbox, sandbox.chat("list", user.staff_id))  # the app's token is fetched and kept
        sandbox.fail_next("unsubscribe", 401, {"code": "InvalidAuthentication", "message": "token expired"})
        sandbox.never_answer("accessToken", times=100)
        data = sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id)
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data, timeout=15)

        assert calendar_id in sandbox.subscriptions[user.union_id]
        assert len(sandbox.calls("accessToken")) >= 2
        assert "Nothing was changed" in card(reply)["text"], card(reply)["text"]
        audit = await bot.wait_log("calendar change", calendar_id=calendar_id)
        assert audit["result"] == "temporary_problem", audit


async def test_sigterm_past_the_grace_mid_change_then_a_restart_sends_one_card(tmp_path: Path) -> None:
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "60", "BOT_STATE_DIR": str(tmp_path)}
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.api_latency = {"unsubscribe": 40.0}  # beyond the 20 s grace: the command is cancelled mid-call
        data = sandbox.chat("unsubscribe Team Lunch", user.staff_id)
        async with running_process(sandbox, env) as first:
            await sandbox.wait_ack(await sandbox.push(data))
            await sandbox.wait_for(lambda: len(unsubscribe_calls(sandbox, user.union_id)) == 1, timeout=10)
            first.signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert await first.wait(timeout=40) == 0
            assert time.monotonic() - stopped < 25
            assert first.logs("shutdown left messages unfinished: the journal keeps them for the next start")
        assert sandbox.replies_to(data) == []
        sandbox.api_latency = {}
        async with running_process(sandbox, env) as second:
            await sandbox.wait_for(lambda: sandbox.replies_to(data), timeout=30)
            await second.wait_log("resuming unfinished commands")
            await answered_after(sandbox, user.staff_id)

        assert [card(reply)["title"] for reply in sandbox.replies_to(data)] == ["✅ Unsubscribed"]
        assert calendar_id not in sandbox.subscriptions[user.union_id]


def test_the_unanswered_change_card_says_it_may_have_been_made_in_each_locale() -> None:
    from bot.cards.render import render
    from bot.models import Outcome, Reply

    data = {"calendar_id": "cal-1", "name": "Team Lunch", "code": "ReadTimeout", "request_id": ""}
    for locale, unchanged in (("en", "Nothing was changed"), ("zh_CN", "没有任何修改")):
        assert unchanged in render(Reply(Outcome.TEMPORARY_PROBLEM, data), locale).markdown
        unanswered = render(Reply(Outcome.TEMPORARY_PROBLEM, {**data, "unanswered": True}), locale).markdown
        assert unchanged not in unanswered and "Team Lunch" in unanswered
    items = [
        {"outcome": Outcome.TEMPORARY_PROBLEM, **data},
        {"outcome": Outcome.TEMPORARY_PROBLEM, **data, "calendar_id": "cal-2", "unanswered": True},
    ]
    for locale, busy, maybe in (("en", "try again", "may have been made"), ("zh_CN", "请一分钟后重试", "可能已生效")):
        batch = render(Reply(Outcome.BATCH, {"items": items}), locale).markdown
        assert batch.count(busy) == 1 and batch.count(maybe) == 1, batch
        assert "ReadTimeout)" in batch or "ReadTimeout）" in batch, batch  # no request id: none shown, nor its dot


async def test_a_change_retried_after_its_unanswered_first_try_was_carried_out_says_it_is_done() -> None:
    # the first try's answer never comes (DingTalk did the change), the bot retries within the command: DingTalk
    # refuses the retry, the calendar being left already; the card must not say the calendar is unknown
    env = {"LOG_LEVEL": "DEBUG", "BOT_COMMAND_TIMEOUT": "10", "BOT_HTTP_TIMEOUT": "1"}
    async with started_sandbox() as sandbox, running_process(sandbox, env):
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user, "Team Lunch")
        sandbox.strict_subscriptions = True
        sandbox.finish_late("unsubscribe")
        data = sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id)
        await sandbox.wait_ack(await sandbox.push(data))
        reply = await sandbox.wait_reply(data, timeout=15)
        await answered_after(sandbox, user.staff_id)

        assert calendar_id not in sandbox.subscriptions[user.union_id]
        assert len(unsubscribe_calls(sandbox, user.union_id)) == 2
        assert [card(reply)["title"] for reply in sandbox.replies_to(data)] == ["✅ Unsubscribed"], card(reply)
