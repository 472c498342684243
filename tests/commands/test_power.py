"""whoami, bulk unsubscribe with preview and confirm, stats and audit for admins: through the real bot."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.sandbox.http import Recorded
from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import (
    BOT_ENV,
    User,
    buttons,
    card,
    converse,
    new_calendar,
    new_user,
    pressed,
    running_bot,
    started_sandbox,
    unsubscribe_calls,
)
from tests.redisserver import RedisServer

ADMIN = User("admin0001", "unionAdmin0001")
ENV = {**BOT_ENV, "BOT_ADMINS": f"someone-else, {ADMIN.staff_id}", "BOT_RETRY_PAUSE_SCALE": "0.01"}


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        platform.add_user(ADMIN.staff_id, ADMIN.union_id)
        yield platform


@pytest_asyncio.fixture(scope="module")
async def bot(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotProcess]:
    state = tmp_path_factory.mktemp("state")
    async with running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(state)}) as process:
        yield process
        assert await process.stop() == 0


pytestmark = pytest.mark.usefixtures("bot")


def private_cards(sandbox: Sandbox, staff_id: str) -> list[dict[str, str]]:
    """The cards the robot OpenAPI sent to this user 1:1."""
    sent = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [staff_id]]
    return [json.loads(r.json()["msgParam"]) for r in sent]


def changed_ids(calls: list[Recorded]) -> list[str]:
    return sorted(call.raw_path.split("/")[6] for call in calls)


# --- whoami ------------------------------------------------------------------------------------------------------


async def test_whoami_shows_who_the_bot_sees_and_what_it_is(sandbox: Sandbox) -> None:
    user = new_user(sandbox)

    _, reply = await converse(sandbox, sandbox.chat("whoami", user.staff_id))

    shown = card(reply)
    assert shown["title"] == "🪪 Who you are to the bot"
    assert f"Staff id: {user.staff_id}" in shown["text"] and f"unionId: {user.union_id}" in shown["text"]
    assert f"Your organization: {sandbox.corp_id}" in shown["text"] and "it can act for you" in shown["text"]
    assert "Conversation: 1:1" in shown["text"] and "Admin of this bot: no" in shown["text"]
    assert "Bot version 0.1.0 · region cn · internal app" in shown["text"]


async def test_whoami_in_a_group_goes_to_the_sender_privately(sandbox: Sandbox) -> None:
    user = new_user(sandbox)

    _, notice = await converse(sandbox, sandbox.chat("我是谁", user.staff_id, group=True))

    assert card(notice)["title"] == "📬 已私聊回复" and user.union_id not in card(notice)["text"]
    [private] = private_cards(sandbox, user.staff_id)
    assert private["title"] == "🪪 机器人眼中的你" and user.union_id in private["text"]


async def test_whoami_tells_a_member_of_another_organization_why_the_bot_cannot_act(sandbox: Sandbox) -> None:
    data = sandbox.chat("whoami", "", senderCorpId="ding-other-corp")

    _, reply = await converse(sandbox, data)

    assert "Your organization: ding-other-corp" in card(reply)["text"]
    assert "You are not a member of the bot's organization: it cannot act for you." in card(reply)["text"]


# --- bulk unsubscribe --------------------------------------------------------------------------------------------


async def test_confirm_acts_on_exactly_the_previewed_set_even_if_the_calendars_changed_since(
    sandbox: Sandbox,
) -> None:
    user = new_user(sandbox)
    alpha, beta = new_calendar(sandbox, user, "Team Alpha"), new_calendar(sandbox, user, "team beta")
    lunch = new_calendar(sandbox, user, "Lunch")

    _, preview = await converse(sandbox, sandbox.chat('unsubscribe "Team*"', user.staff_id))

    assert card(preview)["title"] == "🧹 Unsubscribe from 2 calendars?"
    assert (
        f"1. **Team Alpha** · {alpha}" in card(preview)["text"]
        and f"2. **team beta** · {beta}" in card(preview)["text"]
    )
    assert unsubscribe_calls(sandbox, user.union_id) == []
    [confirm] = buttons(preview)
    assert confirm["title"] == "✅ Confirm (2)"

    gamma = new_calendar(sandbox, user, "Team Gamma")  # matches the pattern now, but was not previewed
    _, done = await converse(sandbox, pressed(sandbox, confirm["actionURL"], user.staff_id))

    assert card(done)["title"] == "📋 2 calendars"
    assert "- **Team Alpha**: ✅ unsubscribed" in card(done)["text"]
    assert changed_ids(unsubscribe_calls(sandbox, user.union_id)) == sorted([alpha, beta])
    assert sandbox.subscriptions[user.union_id] == {lunch, gamma}
    [undo] = buttons(done)
    assert undo["title"] == "↩ Undo all (2)"

    _, undone = await converse(sandbox, pressed(sandbox, undo["actionURL"], user.staff_id))

    assert card(undone)["title"] == "📋 2 calendars" and "- **team beta**: ↩ subscribed again" in card(undone)["text"]
    assert sandbox.subscriptions[user.union_id] == {alpha, beta, lunch, gamma}


async def test_a_second_press_of_confirm_or_undo_does_nothing(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Holidays")
    _, preview = await converse(sandbox, sandbox.chat("unsubscribe all", user.staff_id))
    url = buttons(preview)[0]["actionURL"]
    _, done = await converse(sandbox, pressed(sandbox, url, user.staff_id))
    sandbox.subscribe(user.union_id, holidays)

    _, again = await converse(sandbox, pressed(sandbox, url, user.staff_id))

    assert card(again)["title"] == "⌛ Nothing to confirm"
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    undo = buttons(done)[0]["actionURL"]
    await converse(sandbox, pressed(sandbox, undo, user.staff_id))
    _, undo_again = await converse(sandbox, pressed(sandbox, undo, user.staff_id))
    assert card(undo_again)["title"] == "⌛ Nothing to undo"
    assert len([r for r in sandbox.calls("subscribe") if user.union_id in r.raw_path]) == 1


async def test_someone_else_pressing_or_typing_the_confirm_does_nothing_to_the_askers_calendars(
    sandbox: Sandbox,
) -> None:
    asker, other = new_user(sandbox), new_user(sandbox)
    team = new_calendar(sandbox, asker, "Team Offsite")
    new_calendar(sandbox, other, "Team Other")
    _, preview = await converse(sandbox, sandbox.chat("unsubscribe Team*", asker.staff_id))
    url = buttons(preview)[0]["actionURL"]

    _, pressed_by_other = await converse(sandbox, pressed(sandbox, url, other.staff_id))
    _, own_preview = await converse(sandbox, sandbox.chat("unsubscribe Team*", other.staff_id))

    assert card(pressed_by_other)["title"] == "⌛ Nothing to confirm"
    assert "Team Other" in card(own_preview)["text"] and "Team Offsite" not in card(own_preview)["text"]
    assert unsubscribe_calls(sandbox, asker.union_id) == unsubscribe_calls(sandbox, other.union_id) == []

    _, done = await converse(sandbox, pressed(sandbox, url, asker.staff_id))  # still the asker's to confirm

    assert card(done)["title"] == "📋 1 calendars" and sandbox.subscriptions[asker.union_id] == set()
    assert changed_ids(unsubscribe_calls(sandbox, asker.union_id)) == [team]
    assert unsubscribe_calls(sandbox, other.union_id) == []


@pytest.mark.parametrize("typed", ['取消订阅 "团队*"', "取消订阅 团队??", "取消订阅 ＊周会", "unsubscribe TEAM*"])
async def test_wildcards_match_names_ignoring_case_cjk_included(sandbox: Sandbox, typed: str) -> None:
    user = new_user(sandbox)
    weekly = new_calendar(sandbox, user, "团队周会")
    building = new_calendar(sandbox, user, "团队建设")
    new_calendar(sandbox, user, "食堂菜单")
    team = new_calendar(sandbox, user, "team 周会")
    expected = {
        '取消订阅 "团队*"': [building, weekly],
        "取消订阅 团队??": [building, weekly],
        "取消订阅 ＊周会": [weekly, team],
        "unsubscribe TEAM*": [team],
    }[typed]

    _, preview = await converse(sandbox, sandbox.chat(typed, user.staff_id))

    listed = [line.split(" · ")[-1] for line in card(preview)["text"].splitlines() if " · cal-" in line]
    assert sorted(listed) == sorted(expected)
    assert unsubscribe_calls(sandbox, user.union_id) == []


async def test_a_pattern_can_match_ids_and_regex_characters_are_literal(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    plain = new_calendar(sandbox, user, "Plain")
    sandbox.add_calendar("cal-[a].b", "Brackets")
    sandbox.subscribe(user.union_id, "cal-[a].b")

    _, by_id = await converse(sandbox, sandbox.chat(f"unsubscribe {plain[:-1]}?", user.staff_id))
    _, literal = await converse(sandbox, sandbox.chat("unsubscribe cal-[a].*", user.staff_id))

    assert f"1. **Plain** · {plain}" in card(by_id)["text"] and "Brackets" not in card(by_id)["text"]
    assert card(literal)["title"] == "🧹 Unsubscribe from 1 calendars?" and "Brackets" in card(literal)["text"]


async def test_a_pattern_that_matches_nothing_is_tried_as_one_id_and_offers_the_calendars(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Holidays")

    _, reply = await converse(sandbox, sandbox.chat("unsubscribe Yoga?*", user.staff_id))

    assert card(reply)["title"] == "❓ No calendar called that" and "**Yoga?\\***" in card(reply)["text"]
    [as_id] = unsubscribe_calls(sandbox, user.union_id)
    assert as_id.raw_path.endswith("/calendars/Yoga%3F%2A/unsubscribe")
    assert sandbox.subscriptions[user.union_id] == {holidays}


async def test_a_confirm_after_its_window_does_nothing(tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        env = {**ENV, "BOT_STATE_DIR": str(tmp_path), "BOT_CONFIRM_SECONDS": "0.5"}
        async with running_bot(sandbox, env):
            user = new_user(sandbox)
            new_calendar(sandbox, user, "Holidays")
            _, preview = await converse(sandbox, sandbox.chat("unsubscribe all", user.staff_id))
            await asyncio.sleep(0.6)  # past BOT_CONFIRM_SECONDS

            _, late = await converse(sandbox, pressed(sandbox, buttons(preview)[0]["actionURL"], user.staff_id))

            assert card(late)["title"] == "⌛ Nothing to confirm"
            assert unsubscribe_calls(sandbox, user.union_id) == []


# --- admins --------------------------------------------------------------------------------------------------------


async def test_help_lists_the_admin_commands_only_to_admins(sandbox: Sandbox) -> None:
    user = new_user(sandbox)

    _, for_user = await converse(sandbox, sandbox.chat("help", user.staff_id))
    _, for_admin = await converse(sandbox, sandbox.chat("help", ADMIN.staff_id))

    assert "**whoami**" in card(for_user)["text"] and "**stats**" not in card(for_user)["text"]
    assert "**stats**" in card(for_admin)["text"] and "**audit**" in card(for_admin)["text"]


@pytest.mark.parametrize(("typed", "command"), [("stats", "stats"), ("统计", "stats"), ("audit cal-secret", "audit")])
async def test_a_non_admin_is_refused_politely_and_the_refusal_is_audited(
    sandbox: Sandbox, typed: str, command: str
) -> None:
    user = new_user(sandbox)
    data = sandbox.chat(typed, user.staff_id, group=True)

    _, notice = await converse(sandbox, data)

    assert card(notice)["title"] in ("📬 Answered privately", "📬 已私聊回复")
    [refusal] = private_cards(sandbox, user.staff_id)
    assert refusal["title"] in ("🔒 For admins only", "🔒 仅限管理员") and f"**{command}**" in refusal["text"]
    assert "commands" not in refusal["text"] and "cal-secret" not in refusal["text"]

    _, audit = await converse(sandbox, sandbox.chat("audit", ADMIN.staff_id))  # the refused requests, apart

    [line] = [line for line in card(audit)["text"].splitlines() if f" · {user.staff_id} · " in line]
    assert line.endswith(f" · {command} **cal-secret** · 1×" if command == "audit" else f" · {command} · 1×")


async def test_refused_audits_never_push_a_real_change_out_of_the_admins_card(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user, "Payroll")
    await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id))
    for _ in range(3):  # more than one card's worth (20) of refusals about the calendar, within the rate limit
        prying = new_user(sandbox)
        for _ in range(8):
            await converse(sandbox, sandbox.chat(f"audit {calendar_id}", prying.staff_id))

    _, audit = await converse(sandbox, sandbox.chat(f"audit {calendar_id}", ADMIN.staff_id))

    [change] = [line for line in card(audit)["text"].splitlines() if " · unsubscribe **Payroll** · " in line]
    assert f" · {user.staff_id} · " in change and "admins" not in card(audit)["text"]
    _, refused = await converse(sandbox, sandbox.chat("audit", ADMIN.staff_id))
    assert len([line for line in card(refused)["text"].splitlines() if f"**{calendar_id}** · 8×" in line]) == 3


async def test_audit_shows_the_latest_changes_in_order_by_id_and_by_name_and_after_a_restart(tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        sandbox.add_user(ADMIN.staff_id, ADMIN.union_id)
        env = {**ENV, "BOT_STATE_DIR": str(tmp_path)}
        first, second = new_user(sandbox), new_user(sandbox)
        calendar_id = new_calendar(sandbox, first, "Board Meetings")
        sandbox.subscribe(second.union_id, calendar_id)
        async with running_bot(sandbox, env) as bot:
            for user, text in [
                (first, "list"),  # names the calendar for the records
                (first, f"unsubscribe {calendar_id}"),
                (second, "unsubscribe Board Meetings"),
                (first, f"resubscribe {calendar_id}"),
            ]:
                await converse(sandbox, sandbox.chat(text, user.staff_id))
            sandbox.add_calendar("cal-unrelated", "Other")
            await converse(sandbox, sandbox.chat("unsubscribe cal-unrelated", first.staff_id))
            changes = [entry for entry in bot.logs("calendar change") if entry["calendar_id"] == calendar_id]
            _, by_id = await converse(sandbox, sandbox.chat(f"audit {calendar_id}", ADMIN.staff_id))
            _, by_name = await converse(sandbox, sandbox.chat("审计 board meetings", ADMIN.staff_id))

        expected = [
            f"{n}. * · {entry['staff_id']} · {entry['action']} **Board Meetings** · {entry['result']} · "
            f"{entry['request_id']}"
            for n, entry in enumerate(changes, start=1)
        ]
        in_words = {
            "unsubscribe": "取消订阅",
            "resubscribe": "重新订阅",
            "unsubscribed": "已取消订阅",
            "resubscribed": "已重新订阅",
        }
        expected_zh = [
            f"{n}. * · {entry['staff_id']} · {in_words[entry['action']]} **Board Meetings** · "
            f"{in_words[entry['result']]} · {entry['request_id']}"
            for n, entry in enumerate(changes, start=1)
        ]
        assert [(e["staff_id"], e["action"]) for e in changes] == [
            (first.staff_id, "unsubscribe"),
            (second.staff_id, "unsubscribe"),
            (first.staff_id, "resubscribe"),
        ]
        assert all(entry["request_id"] for entry in changes)
        assert audit_lines(by_id) == expected and audit_lines(by_name) == expected_zh  # 审计: the zh_CN card
        assert card(by_id)["title"] == f"🔎 Audit: {calendar_id}" and "Other" not in card(by_id)["text"]

        async with running_bot(sandbox, env):
            _, after_restart = await converse(sandbox, sandbox.chat(f"audit {calendar_id}", ADMIN.staff_id))

        assert audit_lines(after_restart) == expected


def audit_lines(reply: Recorded) -> list[str]:
    """The numbered lines of an audit card, with the time replaced by `*`."""
    lines = [line for line in card(reply)["text"].splitlines() if line[:1].isdigit()]
    return [line.split(". ", 1)[0] + ". * · " + line.split(" UTC · ", 1)[1] for line in lines]


async def test_stats_figures_match_what_was_done(tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        sandbox.add_user(ADMIN.staff_id, ADMIN.union_id)
        async with running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
            user = new_user(sandbox)
            holidays = new_calendar(sandbox, user)
            sandbox.add_calendar("cal-board", "Board", scope={"someone-else"})
            sandbox.fail_next("unsubscribe", 503, {"code": "ServiceUnavailable", "message": "busy"})
            await converse(sandbox, sandbox.chat(f"unsubscribe {holidays}", user.staff_id))  # retried once
            await converse(sandbox, sandbox.chat("unsubscribe cal-board", user.staff_id))  # permissionDenied
            repeated = sandbox.chat("help", user.staff_id)
            await converse(sandbox, repeated)
            await sandbox.wait_ack(await sandbox.push(repeated))  # the same msgId again: dropped
            await bot.wait_log("duplicate message dropped", msg_id=repeated["msgId"])
            await sandbox.drop_connections()
            await sandbox.wait_connected()
            await sandbox.wait_for(lambda: len(sandbox.connected_at) == 2)
            calls = Counter(r.api for r in sandbox.requests)

            _, stats = await converse(sandbox, sandbox.chat("stats", ADMIN.staff_id))

        text = card(stats)["text"]
        today = text.split("**Today**")[1]
        for part in (text.split("**Today**")[0], today):
            assert ": 3 commands · latency p50 " in part
            assert "· 1 retries · 1 duplicates dropped · 1 reconnects" in part
            assert "- Outcomes: help 1, not\\_in\\_scope 1, unsubscribed 1" in part
            assert "- DingTalk errors: permissionDenied 1" in part
            by_api = ", ".join(f"{api} {count}" for api, count in sorted(calls.items()))
            quota = sum(count for api, count in calls.items() if api not in ("accessToken", "user/get", "webhook"))
            assert f"- DingTalk API calls: {calls.total()} ({quota} count toward" in part
            assert f"monthly quota): {by_api}" in part


async def test_with_redis_a_preview_is_confirmed_on_another_dyno_and_the_audit_outlives_both(
    redis_server: RedisServer,
) -> None:
    async with started_sandbox() as sandbox:
        sandbox.add_user(ADMIN.staff_id, ADMIN.union_id)
        env = {**ENV, "REDIS_URL": redis_server.url}
        user = new_user(sandbox)
        first_id, second_id = new_calendar(sandbox, user, "Team A"), new_calendar(sandbox, user, "Team B")
        async with running_bot(sandbox, env), running_bot(sandbox, env, connections=2):
            _, preview = await converse(sandbox, sandbox.chat('unsubscribe "team ?"', user.staff_id), socket=0)
            url = buttons(preview)[0]["actionURL"]
            _, done = await converse(sandbox, pressed(sandbox, url, user.staff_id), socket=1)
            _, again = await converse(sandbox, pressed(sandbox, url, user.staff_id), socket=0)

        assert card(done)["title"] == "📋 2 calendars" and sandbox.subscriptions[user.union_id] == set()
        assert card(again)["title"] == "⌛ Nothing to confirm"
        assert changed_ids(unsubscribe_calls(sandbox, user.union_id)) == sorted([first_id, second_id])

        async with running_bot(sandbox, env):
            _, audit = await converse(sandbox, sandbox.chat("audit Team B", ADMIN.staff_id))

        [line] = audit_lines(audit)
        assert line.startswith(f"1. * · {user.staff_id} · unsubscribe **Team B** · unsubscribed · ")


async def test_an_admin_asking_in_a_group_gets_the_answer_privately(sandbox: Sandbox) -> None:
    data = sandbox.chat("stats", ADMIN.staff_id, group=True)

    _, notice = await converse(sandbox, data)

    assert card(notice)["title"] == "📬 Answered privately" and "commands" not in card(notice)["text"]
    assert [param["title"] for param in private_cards(sandbox, ADMIN.staff_id)] == ["📊 Bot statistics"]


async def test_a_pattern_longer_than_an_id_can_be_is_refused_before_any_call(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    new_calendar(sandbox, user, "Holidays")

    _, reply = await converse(sandbox, sandbox.chat("unsubscribe " + "a" * 256 + "*", user.staff_id))

    assert card(reply)["title"] == "✏️ That is not a calendar id"
    assert [r for r in sandbox.requests if user.union_id in r.raw_path] == []
