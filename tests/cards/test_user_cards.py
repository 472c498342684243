"""What a user meets, through the real bot: cards that are right, bounded and unambiguous, whatever the data."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from bot.commands.parse import quote_target
from bot.sandbox.http import Recorded
from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import (
    SEND_AS_USER,
    User,
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

QUOTA = {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg", "message": "api count limit", "requestid": "REQ-Q"}
NO_PERMISSION = {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "没有调用该接口的权限"}
MARKDOWN_LIMIT = 5_000  # characters, DingTalk's errcode 34016
MSG_PARAM_LIMIT = 15_000  # bytes of the robot OpenAPI's msgParam


def calendar_with_id(sandbox: Sandbox, user: User, calendar_id: str, name: str) -> str:
    sandbox.add_calendar(calendar_id, name)
    sandbox.subscribe(user.union_id, calendar_id)
    return calendar_id


def private_card(sandbox: Sandbox, user: User) -> tuple[dict[str, str], int]:
    """The msgParam of the last robot OpenAPI message sent to the user privately, and its size in bytes."""
    [*_, sent] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    param = sent.json()["msgParam"]
    return json.loads(param), len(param.encode())


# --- corp ids are optional --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [("senderCorpId",), ("chatbotCorpId",), ("senderCorpId", "chatbotCorpId")])
async def test_a_member_is_served_when_dingtalk_leaves_out_a_corp_id(
    sandbox: Sandbox, missing: tuple[str, ...]
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id)
    for field in missing:
        del data[field]

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == set()


# --- the organization's monthly quota ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "title"),
    [("unsubscribe", "📵 Monthly DingTalk quota used up"), ("取消订阅", "📵 本月钉钉接口调用量已用完")],
)
async def test_a_used_up_monthly_quota_gets_its_own_card_and_is_not_retried(
    sandbox: Sandbox, typed: str, title: str
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.fail_next("unsubscribe", 403, QUOTA, times=5)

    _, reply = await converse(sandbox, sandbox.chat(f'{typed} "{calendar_id}"', user.staff_id))

    text = card(reply)["text"]
    assert card(reply)["title"] == title
    assert "ApiCountLimitForOrg" in text and "REQ-Q" in text
    assert "minute" not in text and "分钟" not in text  # never "try again in a minute"
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    assert sandbox.subscriptions[user.union_id] == {calendar_id}


async def test_a_used_up_quota_is_explained_when_listing_and_inside_a_batch_card(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    first, second = new_calendar(sandbox, user, "Lunch"), new_calendar(sandbox, user, "Yoga")
    sandbox.fail_next("calendars", 403, QUOTA)

    _, listing = await converse(sandbox, sandbox.chat("list", user.staff_id))

    assert card(listing)["title"] == "📵 Monthly DingTalk quota used up"

    sandbox.fail_next("unsubscribe", 403, QUOTA, times=2)
    _, batch = await converse(sandbox, sandbox.chat(f'unsubscribe "{first}", "{second}"', user.staff_id))

    text = card(batch)["text"]
    assert card(batch)["title"] == "📋 2 calendars"
    assert text.count("📵 the organization's monthly DingTalk quota is used up; its admin can upgrade") == 2
    assert "DingTalk is busy" not in text
    assert sandbox.subscriptions[user.union_id] == {first, second}


# --- card sizes -------------------------------------------------------------------------------------------------------


def assert_markdown_within_limits(reply: Recorded) -> str:
    shown = card(reply)
    assert len(shown["title"]) <= 64 and len(shown["text"]) <= MARKDOWN_LIMIT
    assert len(shown.get("btns", [])) <= 5
    assert all(len(b["title"]) <= 20 and len(b["actionURL"]) <= 500 for b in shown.get("btns", []))
    return str(shown["text"])


async def test_three_hundred_calendars_with_long_cjk_names_and_ids_fit_every_card(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    for n in range(300):
        calendar_with_id(sandbox, user, f"日历标识符{n:03d}" * 6, f"非常长的部门共享订阅日历名称第{n:03d}号" * 3)

    _, listing = await converse(sandbox, sandbox.chat("日历", user.staff_id))
    _, no_match = await converse(sandbox, sandbox.chat("取消订阅 公司假期", user.staff_id))
    _, in_group = await converse(sandbox, sandbox.chat("日历", user.staff_id, group=True))

    text = assert_markdown_within_limits(listing)
    shown = text.count("dtmd://")
    assert 0 < shown < 300 and f"另有 {300 - shown} 个未显示" in text and "`取消订阅` 加上它的名称" in text
    text = assert_markdown_within_limits(no_match)
    assert card(no_match)["title"] == "❓ 没有这个名称的日历" and "个未显示" in text
    assert card(in_group)["title"] == "📬 已私聊回复"
    param, size = private_card(sandbox, user)
    assert size <= MSG_PARAM_LIMIT and len(param["text"]) <= MARKDOWN_LIMIT and "个未显示" in param["text"]


def seed_batch(sandbox: Sandbox, user: User, id_length: int) -> str:
    """Five calendars the user follows and fifteen outside their scope, all with long CJK ids; the command naming
    all twenty, each quoted."""
    calendar_ids = ["长" * id_length + f"{n:02d}" for n in range(20)]
    for calendar_id in calendar_ids[:5]:
        calendar_with_id(sandbox, user, calendar_id, "部门日历" * 20)
    for calendar_id in calendar_ids[5:]:
        sandbox.add_calendar(calendar_id, "受限日历", scope={"someone-else"})
    return "取消订阅 " + "，".join(quote_target(calendar_id) for calendar_id in calendar_ids)


async def test_a_batch_card_with_five_undo_links_of_cjk_ids_fits_the_robot_apis_msg_param(sandbox: Sandbox) -> None:
    user = new_user(sandbox)

    await converse(sandbox, sandbox.chat(seed_batch(sandbox, user, 40), user.staff_id, group=True))

    param, size = private_card(sandbox, user)  # a card with buttons goes privately, through the robot OpenAPI
    assert param["title"] == "📋 20 个日历" and size <= MSG_PARAM_LIMIT and len(param["text"]) <= MARKDOWN_LIMIT
    # five links of about 400 characters each: over btn_json_list's 1,000 as buttons, so they are in the body, as
    # many as fit the card (the rest counted)
    shown = param["text"].count("dtmd://")
    assert "actionURL1" not in param and (shown == 5 or f"另有 {5 - shown} 个按钮未显示" in param["text"])
    assert sandbox.subscriptions[user.union_id] == set()


async def test_undo_links_too_long_for_buttons_and_for_the_card_are_counted_not_shown(sandbox: Sandbox) -> None:
    user = new_user(sandbox)

    _, reply = await converse(sandbox, sandbox.chat(seed_batch(sandbox, user, 250), user.staff_id, group=True))

    text = assert_markdown_within_limits(reply)
    assert card(reply)["title"] == "📋 20 个日历" and "另有 5 个按钮未显示" in text
    assert sandbox.subscriptions[user.union_id] == set()


# --- the permission each API needs ------------------------------------------------------------------------------------


async def test_a_missing_permission_names_the_one_the_failed_api_needs(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)

    sandbox.fail_next("calendars", 403, NO_PERMISSION)
    _, listing = await converse(sandbox, sandbox.chat("list", user.staff_id))
    sandbox.fail_next("calendars", 403, NO_PERMISSION)
    _, by_name = await converse(sandbox, sandbox.chat("unsubscribe Company Holidays", user.staff_id))
    sandbox.fail_next("unsubscribe", 403, NO_PERMISSION)
    _, change = await converse(sandbox, sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id))
    sandbox.fail_next("user/get", 200, {"errcode": 60011, "errmsg": "no permission"})
    _, lookup = await converse(sandbox, sandbox.chat("list", "staff-new-to-the-bot"))

    for reply, scope in [
        (listing, "Calendar.Event.Read"),
        (by_name, "Calendar.Event.Read"),
        (change, "Calendar.Calendar.Write"),
        (lookup, "qyapi\\_get\\_member"),
    ]:
        assert card(reply)["title"] == "🔒 The bot lacks a permission"
        assert f"missing the permission {scope}," in card(reply)["text"]
    assert sandbox.subscriptions[user.union_id] == {calendar_id}


# --- a text that is neither an id nor a name --------------------------------------------------------------------------


async def test_a_name_nobody_has_offers_the_subscribed_calendars_after_it_was_tried_as_an_id(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")

    _, reply = await converse(sandbox, sandbox.chat("取消订阅 公司假期", user.staff_id))

    text = card(reply)["text"]
    assert card(reply)["title"] == "❓ 没有这个名称的日历"
    assert "**公司假期**" in text and f"1. **Company Holidays** · {holidays}" in text
    assert buttons(reply) == [
        {"title": "取消订阅 Company Holida…", "actionURL": SEND_AS_USER + quote(f'取消订阅 "{holidays}"')}
    ]
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe"]
    assert sandbox.subscriptions[user.union_id] == {holidays}


# --- buttons a user can tell apart ------------------------------------------------------------------------------------


async def test_two_calendars_with_the_same_long_name_get_buttons_that_differ_first(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    name = "Team Offsite Planning Committee"
    east, west = new_calendar(sandbox, user, name), new_calendar(sandbox, user, name)

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {name}", user.staff_id))

    titles = [b["title"] for b in buttons(reply)]
    assert titles == ["1. Unsubscribe Team…", "2. Unsubscribe Team…"]
    assert f"1. **{name}** · {east}" in card(reply)["text"] and f"2. **{name}** · {west}" in card(reply)["text"]
    assert unsubscribe_calls(sandbox, user.union_id) == []

    _, after_press = await converse(sandbox, pressed(sandbox, buttons(reply)[1]["actionURL"], user.staff_id))

    assert card(after_press)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == {east}


# --- names wherever the bot has seen them -----------------------------------------------------------------------------


async def test_the_undo_card_names_the_calendar_without_asking_dingtalk_again(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")
    _, listing = await converse(sandbox, sandbox.chat("list", user.staff_id))
    _, done = await converse(sandbox, pressed(sandbox, buttons(listing)[0]["actionURL"], user.staff_id))

    _, undone = await converse(sandbox, pressed(sandbox, buttons(done)[0]["actionURL"], user.staff_id))

    assert f"**Company Holidays** ({holidays})" in card(done)["text"]
    assert card(undone)["title"] == "↩ Subscribed again"
    assert f"You follow **Company Holidays** ({holidays}) again" in card(undone)["text"]
    assert buttons(undone)[0]["title"] == "Unsubscribe Company…"
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe", "subscribe"]


async def test_a_refusal_names_the_calendar_when_the_bot_has_seen_its_name(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")
    sandbox.fail_next("unsubscribe", 400, {"code": "permissionDenied", "message": "not in scope"})
    _, refused = await converse(sandbox, sandbox.chat("unsubscribe company holidays", user.staff_id))
    sandbox.fail_next("subscribe", 400, {"code": "exceedSubscribeLimit", "message": "exceed subscribe limit"})
    _, over_limit = await converse(sandbox, sandbox.chat(f'重新订阅 "{holidays}"', user.staff_id))

    assert card(refused)["title"] == "🚫 Not in this calendar's subscription scope"
    assert f"scope of **Company Holidays** ({holidays})" in card(refused)["text"]
    assert card(over_limit)["title"] == "🚫 订阅数量已达上限"
    assert f"**Company Holidays**（{holidays}）" in card(over_limit)["text"]  # remembered from the listing
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe", "subscribe"]


# --- the sender's last language ---------------------------------------------------------------------------------------


async def test_a_picture_is_answered_in_the_language_the_sender_used_last(sandbox: Sandbox) -> None:
    english, newcomer = new_user(sandbox), new_user(sandbox)
    await converse(sandbox, sandbox.chat("list", english.staff_id))

    _, to_english = await converse(sandbox, sandbox.chat(None, english.staff_id))
    _, to_newcomer = await converse(sandbox, sandbox.chat(None, newcomer.staff_id))
    await converse(sandbox, sandbox.chat("日历", english.staff_id))
    _, switched = await converse(sandbox, sandbox.chat(None, english.staff_id))

    assert card(to_english)["title"] == "📅 Calendar bot" and "I did not understand" in card(to_english)["text"]
    assert card(to_newcomer)["title"] == "📅 日历机器人"  # nothing known: BOT_LOCALE
    assert card(switched)["title"] == "📅 日历机器人"


# --- at most 20 calendars per command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [21, 600])
async def test_more_than_twenty_calendars_in_one_command_are_refused_without_any_call(
    sandbox: Sandbox, count: int
) -> None:
    user = new_user(sandbox)
    lookups = len(sandbox.calls("user/get"))
    names = ", ".join(f"calendar {n}" for n in range(count))

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {names}", user.staff_id))

    assert card(reply)["title"] == "✋ Too many calendars at once"
    assert "at most 20 calendars" in card(reply)["text"]
    assert calendar_calls(sandbox, user.union_id) == [] and len(sandbox.calls("user/get")) == lookups


async def test_twenty_calendars_in_one_command_are_all_handled(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_ids = [new_calendar(sandbox, user, f"Team {n}") for n in range(20)]
    typed = ", ".join(f'"{calendar_id}"' for calendar_id in calendar_ids)

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    assert card(reply)["title"] == "📋 20 calendars"
    assert sandbox.subscriptions[user.union_id] == set()


@pytest.mark.parametrize("command", ["unsubscribe", "resubscribe"])
async def test_a_calendar_named_several_ways_in_one_command_is_changed_once(sandbox: Sandbox, command: str) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user, "Company Holidays")
    if command == "unsubscribe":
        typed = f'Company Holidays, {calendar_id}, "{calendar_id}", company holidays'
    else:
        sandbox.subscriptions[user.union_id].discard(calendar_id)
        typed = f'{calendar_id}, "{calendar_id}"'

    _, reply = await converse(sandbox, sandbox.chat(f"{command} {typed}", user.staff_id))

    changes = [r for r in calendar_calls(sandbox, user.union_id) if r.api in ("unsubscribe", "subscribe")]
    assert len(changes) == 1 and card(reply)["title"]


# --- hostile data from DingTalk ---------------------------------------------------------------------------------------


async def test_a_text_that_is_one_calendars_id_and_another_calendars_name_is_asked_about(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    payroll = new_calendar(sandbox, user, "Payroll deadlines")
    spam = new_calendar(sandbox, user, payroll)  # someone published a calendar named like the real one's id

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {payroll}", user.staff_id))

    assert card(reply)["title"] == "🤔 Which one?"
    assert unsubscribe_calls(sandbox, user.union_id) == []
    text = card(reply)["text"]
    assert f"1. **Payroll deadlines** · {payroll}" in text and f"2. **{payroll}** · {spam}" in text

    # The button of the calendar whose id is the other one's name acts on exactly that calendar, not asking again.
    _, after_press = await converse(sandbox, pressed(sandbox, buttons(reply)[0]["actionURL"], user.staff_id))

    assert card(after_press)["title"] == "✅ Unsubscribed"
    assert f"**Payroll deadlines** ({payroll})" in card(after_press)["text"]
    assert sandbox.subscriptions[user.union_id] == {spam}

    _, again = await converse(sandbox, sandbox.chat(f"unsubscribe {payroll}", user.staff_id))

    assert card(again)["title"] == "✅ Unsubscribed"  # now only the look-alike's name: no doubt left
    assert sandbox.subscriptions[user.union_id] == set()


@pytest.mark.parametrize(
    "hostile", ["cal,a", "cal，a", "cal、a", 'cal"a"', 'cal ""a', " cal a ", "日历 cal,a", 'a", "cal']
)
async def test_a_button_acts_on_exactly_the_calendar_it_shows_whatever_its_id_holds(
    sandbox: Sandbox, hostile: str
) -> None:
    user = new_user(sandbox)
    calendar_with_id(sandbox, user, hostile, "Target")
    decoys = {calendar_with_id(sandbox, user, decoy, f"Decoy {decoy}") for decoy in ("cal", "a", "日历 cal")}
    _, listing = await converse(sandbox, sandbox.chat("list", user.staff_id))
    [url] = [b["actionURL"] for b in buttons(listing) if b["title"] == "Unsubscribe Target"]

    _, done = await converse(sandbox, pressed(sandbox, url, user.staff_id))

    assert card(done)["title"] == "✅ Unsubscribed"
    assert sandbox.subscriptions[user.union_id] == decoys
    [call] = unsubscribe_calls(sandbox, user.union_id)
    assert call.raw_path.split("/")[6] == quote(hostile, safe="")

    _, undone = await converse(sandbox, pressed(sandbox, buttons(done)[0]["actionURL"], user.staff_id))

    assert card(undone)["title"] == "↩ Subscribed again"
    assert sandbox.subscriptions[user.union_id] == decoys | {hostile}


async def test_the_audit_line_records_an_id_escaped_like_every_logged_value(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    hostile = 'cal","result":"forged\u2028\u2029line\u202f'
    calendar_with_id(sandbox, user, hostile, "Hostile")

    await converse(sandbox, sandbox.chat(f"unsubscribe {quote_target(hostile)}", user.staff_id))

    entry = await bot.wait_log("calendar change", calendar_id=hostile)
    assert entry["result"] == "unsubscribed" and entry["union_id"] == user.union_id
    [line] = [line for line in bot.lines if "calendar change" in line and user.union_id in line]
    assert "\u2028" not in line and "\u2029" not in line
    assert "\\u2028" in line and '"result":"unsubscribed"' in line and '"result":"forged' not in line
