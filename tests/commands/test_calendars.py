"""Calendars by name, the list with one-tap buttons, undo, several at once: through the real bot."""

from __future__ import annotations

import json

import pytest

from bot.sandbox.platform import Sandbox
from tests.helpers import (
    SEND_AS_USER,
    buttons,
    calendar_calls,
    card,
    converse,
    new_calendar,
    new_user,
    pressed,
    unsubscribe_calls,
)

pytestmark = pytest.mark.usefixtures("bot")


async def test_list_shows_only_subscribed_calendars_each_with_a_button_that_unsubscribes_it(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")
    lunch = new_calendar(sandbox, user, "食堂菜单")

    _, reply = await converse(sandbox, sandbox.chat("list", user.staff_id))

    [listing] = [
        r for r in sandbox.calls("calendars") if r.raw_path == f"/v1.0/calendar/users/{user.union_id}/calendars"
    ]
    assert listing.method == "GET" and listing.headers["x-acs-dingtalk-access-token"].startswith("sandbox-token-")
    shown = card(reply)
    assert shown["title"] == "📅 Your subscribed calendars"
    assert f"**Company Holidays** · {holidays}" in shown["text"] and f"**食堂菜单** · {lunch}" in shown["text"]
    assert "primary-" not in shown["text"]
    assert buttons(reply) == [
        {"title": "Unsubscribe Company…", "actionURL": f"{SEND_AS_USER}unsubscribe%20%22{holidays}%22"},
        {"title": "Unsubscribe 食堂菜单", "actionURL": f"{SEND_AS_USER}unsubscribe%20%22{lunch}%22"},
    ]

    _, after_press = await converse(sandbox, pressed(sandbox, buttons(reply)[1]["actionURL"], user.staff_id))

    assert card(after_press)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == {holidays}


@pytest.mark.parametrize(("command", "title"), [("list", "📭 No subscribed calendars"), ("日历", "📭 没有订阅的日历")])
async def test_a_list_with_none_says_so(sandbox: Sandbox, command: str, title: str) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat(command, user.staff_id))

    assert card(reply)["title"] == title and buttons(reply) == []


async def test_a_long_list_puts_its_links_in_the_card_body(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_ids = [new_calendar(sandbox, user, f"Team {n}") for n in range(7)]

    _, reply = await converse(sandbox, sandbox.chat("calendars", user.staff_id))

    assert reply.json()["msgtype"] == "markdown"
    text = card(reply)["text"]
    for n, calendar_id in enumerate(calendar_ids):
        assert f"- [Unsubscribe Team {n}]({SEND_AS_USER}unsubscribe%20%22{calendar_id}%22)" in text
        assert f"{n + 1}. **Team {n}** · {calendar_id}" in text


@pytest.mark.parametrize("typed", ["Company Holidays", "  company HOLIDAYS ", "company holidays"])
async def test_unsubscribe_by_name_ignores_case_and_surrounding_space(sandbox: Sandbox, typed: str) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")
    other = new_calendar(sandbox, user, "Company Holidays 2027")

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    assert card(reply)["title"] == "✅ Unsubscribed"
    assert f"**Company Holidays** ({holidays})" in card(reply)["text"]
    assert [call.raw_path.split("/")[6] for call in unsubscribe_calls(sandbox, user.union_id)] == [holidays]
    assert sandbox.subscriptions[user.union_id] == {other}


async def test_a_calendar_with_a_cjk_name_is_found_by_it_and_answered_in_chinese(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    lunch = new_calendar(sandbox, user, "食堂 菜单")

    _, reply = await converse(sandbox, sandbox.chat("取消订阅 食堂 菜单", user.staff_id))

    assert card(reply)["title"] == "✅ 已取消订阅"
    assert f"**食堂 菜单**（{lunch}）" in card(reply)["text"]
    assert buttons(reply) == [
        {
            "title": "↩ 撤销：食堂 菜单",
            "actionURL": SEND_AS_USER + "%E9%87%8D%E6%96%B0%E8%AE%A2%E9%98%85%20%22" + lunch + "%22",
        }
    ]


async def test_two_calendars_with_the_same_name_are_never_guessed_between(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    east, west = new_calendar(sandbox, user, "Team Offsite"), new_calendar(sandbox, user, "team offsite")

    _, reply = await converse(sandbox, sandbox.chat("unsubscribe Team Offsite", user.staff_id))

    assert card(reply)["title"] == "🤔 Which one?"
    assert unsubscribe_calls(sandbox, user.union_id) == []
    assert [b["actionURL"] for b in buttons(reply)] == [f"{SEND_AS_USER}unsubscribe%20%22{c}%22" for c in (east, west)]

    _, after_press = await converse(sandbox, pressed(sandbox, buttons(reply)[1]["actionURL"], user.staff_id))

    assert card(after_press)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == {east}


async def test_the_id_of_any_own_calendar_is_acted_on_and_the_api_explains_a_primary_one(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe primary-{user.union_id}", user.staff_id))

    assert card(reply)["title"] == "🚫 Not a subscribed calendar"
    [call] = unsubscribe_calls(sandbox, user.union_id)
    assert call.raw_path.endswith(f"/calendars/primary-{user.union_id}/unsubscribe")


async def test_an_unknown_single_word_is_tried_as_an_id_and_then_offers_the_subscribed_calendars(
    sandbox: Sandbox,
) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user)
    _, reply = await converse(sandbox, sandbox.chat("unsubscribe cal-from-a-colleague", user.staff_id))

    assert card(reply)["title"] == "❓ No calendar called that"
    assert "Error code: invalidParameter" in card(reply)["text"]  # DingTalk's answer to it as an id
    assert f"1. **Company Holidays** · {holidays}" in card(reply)["text"]
    assert buttons(reply) == [
        {"title": "Unsubscribe Company…", "actionURL": f"{SEND_AS_USER}unsubscribe%20%22{holidays}%22"}
    ]
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe"]
    assert sandbox.subscriptions[user.union_id] == {holidays}


async def test_a_name_that_matches_nothing_changes_nothing_and_offers_the_subscribed_calendars(
    sandbox: Sandbox,
) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")

    _, reply = await converse(sandbox, sandbox.chat("unsubscribe Yoga Class", user.staff_id))

    assert card(reply)["title"] == "❓ No calendar called that"
    assert "**Yoga Class**" in card(reply)["text"]
    assert buttons(reply) == [
        {"title": "Unsubscribe Company…", "actionURL": f"{SEND_AS_USER}unsubscribe%20%22{holidays}%22"}
    ]
    assert unsubscribe_calls(sandbox, user.union_id) == []


@pytest.mark.parametrize("separator", [", ", "，", "、"])
async def test_several_calendars_at_once_get_one_card_with_each_outcome(sandbox: Sandbox, separator: str) -> None:
    user = new_user(sandbox)
    new_calendar(sandbox, user, "Company Holidays")
    lunch = new_calendar(sandbox, user, "Lunch")
    sandbox.add_calendar("cal-restricted", "Board", scope={"someone-else"})
    typed = separator.join(["Company Holidays", "cal-restricted", lunch, "no such thing"])

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    text = card(reply)["text"]
    assert card(reply)["title"] == "📋 4 calendars"
    assert "- **Company Holidays**: ✅ unsubscribed" in text
    assert "- **cal-restricted**: 🚫 you are not in its subscription scope" in text and "permissionDenied" in text
    assert "- **Lunch**: ✅ unsubscribed" in text  # typed as an id; listed first, so its name is known
    assert "- **no such thing**: ❓ no calendar called that" in text
    assert sandbox.subscriptions[user.union_id] == set()
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 3
    assert [b["title"] for b in buttons(reply)] == ["↩ Undo: Company Hol…", "↩ Undo: Lunch"]
    assert len([r for r in sandbox.calls("calendars") if user.union_id in r.raw_path]) == 1


async def test_undo_resubscribes_and_offers_unsubscribe_again(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user)
    _, done = await converse(sandbox, sandbox.chat(f"unsubscribe {holidays}", user.staff_id))

    _, undone = await converse(sandbox, pressed(sandbox, buttons(done)[0]["actionURL"], user.staff_id))

    [subscribe] = [r for r in sandbox.calls("subscribe") if user.union_id in r.raw_path]
    assert subscribe.method == "POST" and subscribe.body == b""
    assert subscribe.raw_path == f"/v1.0/calendar/users/{user.union_id}/calendars/{holidays}/subscribe"
    assert card(undone)["title"] == "↩ Subscribed again"
    assert sandbox.subscriptions[user.union_id] == {holidays}

    _, again = await converse(sandbox, pressed(sandbox, buttons(undone)[0]["actionURL"], user.staff_id))

    assert card(again)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == set()


async def test_a_resubscribe_over_the_limit_is_explained(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    sandbox.fail_next("subscribe", 400, {"code": "exceedSubscribeLimit", "message": "exceed subscribe limit"})

    _, reply = await converse(sandbox, sandbox.chat("重新订阅 cal-anything", user.staff_id))

    assert card(reply)["title"] == "🚫 订阅数量已达上限"
    assert "exceedSubscribeLimit" in card(reply)["text"]


async def test_in_a_group_a_card_with_buttons_goes_to_the_sender_privately(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user)
    data = sandbox.chat("list", user.staff_id, group=True)

    _, notice = await converse(sandbox, data)

    assert notice.api == "webhook" and card(notice)["title"] == "📬 Answered privately"
    assert notice.json()["at"]["atUserIds"] == [user.staff_id]
    [private] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    param = json.loads(private.json()["msgParam"])
    assert private.json()["msgKey"] == "sampleActionCard"
    assert param["title"] == "📅 Your subscribed calendars"
    assert param["singleURL"] == f"{SEND_AS_USER}unsubscribe%20%22{holidays}%22"


async def test_in_a_group_the_card_itself_is_posted_if_the_private_send_fails(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    new_calendar(sandbox, user)
    sandbox.fail_next("batchSend", 403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "no"})
    data = sandbox.chat("list", user.staff_id, group=True)

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "📅 Your subscribed calendars"


async def test_a_card_without_buttons_is_answered_in_the_group_itself(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id, group=True))

    assert card(reply)["title"] == "📅 Calendar bot"
    assert [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]] == []
