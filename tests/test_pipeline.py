"""The real bot against the loopback sandbox: what DingTalk receives for each kind of message."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from bot.sandbox.platform import Sandbox
from tests.botprocess import BotProcess
from tests.helpers import (
    SEND_AS_USER,
    calendar_calls,
    card,
    converse,
    new_calendar,
    new_user,
    started_sandbox,
    unsubscribe_calls,
)

pytestmark = pytest.mark.usefixtures("bot")


async def test_unsubscribe_in_a_one_to_one_chat(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    ack, reply = await converse(sandbox, data)

    assert ack["code"] == 200 and json.loads(ack["data"]) == {"response": None}
    lookup = next(r for r in sandbox.calls("user/get") if r.json() == {"userid": user.staff_id})
    assert lookup.method == "POST" and lookup.query["access_token"].startswith("sandbox-token-")
    # A typed text may be an id or a name: the calendars are listed first, so that no name is mistaken for an id.
    listing, call = calendar_calls(sandbox, user.union_id)
    assert listing.api == "calendars" and call.method == "POST"
    assert call.raw_path == f"/v1.0/calendar/users/{user.union_id}/calendars/{calendar_id}/unsubscribe"
    assert call.headers["x-acs-dingtalk-access-token"] == lookup.query["access_token"]
    assert call.body == b""
    assert calendar_id not in sandbox.subscriptions[user.union_id]
    assert reply.api == "webhook" and reply.raw_path == data["sessionWebhook"].removeprefix(sandbox.base_url)
    body = reply.json()
    assert body["msgtype"] == "actionCard" and "at" not in body
    assert body["actionCard"]["title"] == "✅ Unsubscribed"
    assert f"**Company Holidays** ({calendar_id})" in body["actionCard"]["text"]
    assert "Request id: " in body["actionCard"]["text"]
    assert body["actionCard"]["btns"] == [
        {"title": "↩ Undo: Company Hol…", "actionURL": f"{SEND_AS_USER}resubscribe%20%22{calendar_id}%22"}
    ]


async def test_unsubscribe_by_mention_in_a_group_answers_in_chinese_with_the_buttons_sent_privately(
    sandbox: Sandbox,
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"取消订阅 {calendar_id}", user.staff_id, group=True)
    assert data["text"]["content"].startswith(" ")  # as DingTalk delivers group text, mention removed

    _, notice = await converse(sandbox, data)

    assert calendar_id not in sandbox.subscriptions[user.union_id]
    body = notice.json()
    assert notice.api == "webhook" and body["msgtype"] == "markdown"
    assert body["at"] == {"atUserIds": [user.staff_id], "isAtAll": False}
    assert body["markdown"]["title"] == "📬 已私聊回复"
    assert body["markdown"]["text"].endswith(f"@{user.staff_id}")
    [private] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    sent = private.json()
    assert sent["msgKey"] == "sampleActionCard" and sent["robotCode"] == sandbox.client_id
    param = json.loads(sent["msgParam"])
    assert param["title"] == "✅ 已取消订阅"
    assert param["singleURL"] == "dtmd://dingtalkclient/sendMessage?content=" + quote(f'重新订阅 "{calendar_id}"')


async def test_the_union_id_is_looked_up_once_per_sender(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    first, second = new_calendar(sandbox, user), new_calendar(sandbox, user)
    await converse(sandbox, sandbox.chat(f"unsubscribe {first}", user.staff_id))
    await converse(sandbox, sandbox.chat(f"unsubscribe {second}", user.staff_id))

    assert [r.json() for r in sandbox.calls("user/get")].count({"userid": user.staff_id}) == 1
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 2


async def test_a_sender_union_id_in_the_message_is_used_without_a_lookup(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, senderUnionId=user.union_id)

    await converse(sandbox, data)

    assert {"userid": user.staff_id} not in [r.json() for r in sandbox.calls("user/get")]
    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1


SEED_ERRORS = [
    # (what the calendar API answers, the card's title, the code it shows)
    (
        (400, "permissionDenied", "The user is not within the subscription scope"),
        "🚫 Not in this calendar's subscription scope",
        "permissionDenied",
    ),
    ((400, "invalidParameter", "calendar type invalid"), "🚫 Not a subscribed calendar", "invalidParameter"),
    ((400, "invalidParameter", "forwardErrorMessage"), "❓ Calendar not found", "invalidParameter"),
    ((400, "invalidParameter", "calendarId cannot be blank"), "✏️ Which calendar?", "invalidParameter"),
    ((400, "invalidParameter", "something new"), "❓ Calendar not found", "invalidParameter"),
    (
        (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "没有调用该接口的权限"),
        "🔒 The bot lacks a permission",
        "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    ),
    (
        (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "qps"),
        "⏳ DingTalk is busy",
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
    ),
    ((429, "system.busy", "busy"), "⏳ DingTalk is busy", "system.busy"),
    ((500, "internalError", "oops"), "⏳ DingTalk is busy", "internalError"),
    ((503, "", ""), "⏳ DingTalk is busy", "HTTP503"),
]


@pytest.mark.parametrize(("answer", "title", "code"), SEED_ERRORS, ids=[e[0][1] or "503" for e in SEED_ERRORS])
async def test_each_calendar_error_gets_its_own_card_with_code_and_request_id(
    sandbox: Sandbox, answer: tuple[int, str, str], title: str, code: str
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    status, error_code, message = answer
    body = {"code": error_code, "message": message, "requestid": "REQ-42"} if error_code else "<html>bad gateway</html>"
    sandbox.fail_next("unsubscribe", status, body, times=100)  # temporary ones persist past the command's budget

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id))

    shown = card(reply)
    assert shown["title"] == title
    assert f"Error code: {code.replace('_', chr(92) + '_')}" in shown["text"]
    assert "Request id: REQ-42" in shown["text"] if error_code else "Request id: " in shown["text"]
    assert calendar_id in sandbox.subscriptions[user.union_id]  # nothing changed


@pytest.mark.parametrize(
    ("typed", "sent_as"),
    [
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("x?y#z", "x%3Fy%23z"),
        ("100%", "100%25"),
        ("%2e%2e", "%252e%252e"),
        ("...", "..."),
        ("日历", "%E6%97%A5%E5%8E%86"),
    ],
)
async def test_a_hostile_calendar_id_stays_one_path_segment(sandbox: Sandbox, typed: str, sent_as: str) -> None:
    user = new_user(sandbox)
    await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    [call] = unsubscribe_calls(sandbox, user.union_id)
    assert call.raw_path == f"/v1.0/calendar/users/{user.union_id}/calendars/{sent_as}/unsubscribe"


@pytest.mark.parametrize("typed", ["..", ".", "x" * 300, "a\u0000b", "a\u202eb", "a\u200bb"])
async def test_what_cannot_be_a_calendar_id_is_refused_without_calling_dingtalk(sandbox: Sandbox, typed: str) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    assert card(reply)["title"] == "✏️ That is not a calendar id"
    assert calendar_calls(sandbox, user.union_id) == []


async def test_a_missing_calendar_id_gets_usage_without_calling_dingtalk(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("unsubscribe   ", user.staff_id))

    assert card(reply)["title"] == "✏️ Which calendar?"
    assert "unsubscribe cal-holidays" in card(reply)["text"]
    assert calendar_calls(sandbox, user.union_id) == []


async def test_markdown_in_a_calendar_id_is_echoed_as_plain_text(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    typed = "[click](https://evil.example/x)**![img](http://e/i.png)<b>@all</b>"
    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {typed}", user.staff_id))

    text = card(reply)["text"]
    assert "](" not in text and "<b>" not in text and "**!" not in text
    assert r"\[click\]\(https://" + "\u200b" + r"evil.example/x\)" in text
    assert "&lt;b&gt;@\u200ball&lt;/b&gt;" in text


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("help", "📅 Calendar bot"),
        ("HELP", "📅 Calendar bot"),
        ("帮助", "📅 日历机器人"),
        ("what can you do?", "📅 日历机器人"),
        (None, "📅 日历机器人"),
        ("", "📅 日历机器人"),
    ],
)
async def test_help_and_anything_not_understood_get_the_help_card(
    sandbox: Sandbox, text: str | None, title: str
) -> None:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat(text, user.staff_id))

    assert card(reply)["title"] == title
    assert "cal-holidays" in card(reply)["text"]
    assert calendar_calls(sandbox, user.union_id) == []


async def test_a_rich_text_message_is_read_for_its_text(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    content = {"richText": [{"text": f"unsubscribe {calendar_id}"}, {"downloadCode": "dc", "type": "picture"}]}
    data = sandbox.chat(None, user.staff_id, msgtype="richText", content=content)

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "✅ Unsubscribed"


async def test_a_token_rejected_by_dingtalk_is_refreshed_and_the_call_retried_once(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    tokens_before = len(sandbox.calls("accessToken"))
    sandbox.expire_tokens()

    _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id))

    assert card(reply)["title"] == "✅ Unsubscribed"
    assert len(sandbox.calls("accessToken")) == tokens_before + 1
    lookups = [r for r in sandbox.calls("user/get") if r.json() == {"userid": user.staff_id}]
    assert len(lookups) == 2  # topapi answered errcode 88 / 40014 once, then the new token worked
    assert lookups[0].query["access_token"] != lookups[1].query["access_token"]
    [call] = unsubscribe_calls(sandbox, user.union_id)
    assert call.headers["x-acs-dingtalk-access-token"] == lookups[1].query["access_token"]


async def test_an_openapi_token_rejection_is_retried_with_a_fresh_token(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    await converse(sandbox, sandbox.chat("unsubscribe warm-up-the-cache", user.staff_id))
    sandbox.expire_tokens()

    _, reply = await converse(sandbox, sandbox.chat(f'unsubscribe "{calendar_id}"', user.staff_id))

    assert card(reply)["title"] == "✅ Unsubscribed"
    first, second = unsubscribe_calls(sandbox, user.union_id)[-2:]
    assert first.raw_path == second.raw_path
    assert first.headers["x-acs-dingtalk-access-token"] != second.headers["x-acs-dingtalk-access-token"]


async def test_an_expired_webhook_falls_back_to_the_robot_openapi_in_a_one_to_one_chat(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, webhook_expires_in=-1)

    _, reply = await converse(sandbox, data)

    assert reply.api == "batchSend"
    assert reply.raw_path == "/v1.0/robot/oToMessages/batchSend"
    assert reply.headers["x-acs-dingtalk-access-token"].startswith("sandbox-token-")
    body = reply.json()
    assert body["robotCode"] == sandbox.client_id and body["userIds"] == [user.staff_id]
    assert body["msgKey"] == "sampleActionCard"
    param = json.loads(body["msgParam"])
    assert param["title"] == "✅ Unsubscribed" and calendar_id in param["text"]
    assert param["singleTitle"] == "↩ Undo: Company Hol…"
    assert param["singleURL"].endswith(f"resubscribe%20%22{calendar_id}%22")
    assert sandbox.replies_to(data) == [reply]


async def test_an_expired_webhook_falls_back_to_the_group_send_in_a_group(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id, group=True, webhook_expires_in=-1)

    _, reply = await converse(sandbox, data)

    assert reply.raw_path == "/v1.0/robot/groupMessages/send"
    body = reply.json()
    assert body["openConversationId"] == data["conversationId"] and body["robotCode"] == sandbox.client_id
    assert json.loads(body["msgParam"])["title"] == "📅 Calendar bot"


@pytest.mark.parametrize(
    "webhook",
    [
        "{elsewhere}/robot/sendBySession?session={session}",  # the same host, another port
        "http://localhost:{port}/robot/sendBySession?session={session}",  # the same port, another host name
        "http://127.0.0.1:{port}@127.0.0.1:{elsewhere_port}/robot/sendBySession?session={session}",  # userinfo
        "https://oapi.dingtalk.com.evil.example/robot/send?session={session}",
        "https://evil.example/?u=https://oapi.dingtalk.com/&session={session}",
    ],
    ids=["another port", "another host name", "userinfo", "lookalike host", "DingTalk in the query"],
)
async def test_a_webhook_outside_dingtalk_is_never_called(sandbox: Sandbox, webhook: str) -> None:
    """A second loopback server stands for "elsewhere": reachable, so a post to it would show."""
    user = new_user(sandbox)
    session = f"s-{user.staff_id}"
    async with started_sandbox() as elsewhere:
        port, elsewhere_port = sandbox.base_url.rpartition(":")[2], elsewhere.base_url.rpartition(":")[2]
        url = webhook.format(elsewhere=elsewhere.base_url, elsewhere_port=elsewhere_port, port=port, session=session)
        data = sandbox.chat("help", user.staff_id, sessionWebhook=url)

        _, reply = await converse(sandbox, data)

        assert reply.api == "batchSend" and reply.json()["userIds"] == [user.staff_id]
        assert elsewhere.requests == []
        assert not [r for r in sandbox.requests if session in r.raw_path]


@pytest.mark.parametrize(
    "identity",
    [{"senderStaffId": ""}, {"senderCorpId": "ding-another-org"}],
    ids=["no staff id", "another organization"],
)
async def test_a_foreign_or_unidentified_sender_gets_a_members_only_card(
    sandbox: Sandbox, identity: dict[str, str]
) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("unsubscribe cal-holidays", user.staff_id, group=True, **identity)
    lookups_before = len(sandbox.calls("user/get"))

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "🏢 Members only"
    assert len(sandbox.calls("user/get")) == lookups_before
    assert calendar_calls(sandbox, user.union_id) == []


async def test_a_sender_dingtalk_does_not_know_gets_a_clear_card(sandbox: Sandbox) -> None:
    data = sandbox.chat("unsubscribe cal-holidays", "staff-unknown-to-dingtalk")

    _, reply = await converse(sandbox, data)

    assert card(reply)["title"] == "🏢 Account not found"
    assert "Error code: 60121" in card(reply)["text"]


async def test_a_repeated_msg_id_is_acknowledged_but_acted_on_once(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    first = await sandbox.push(data)
    second = await sandbox.push(data)
    assert (await sandbox.wait_ack(first))["code"] == 200
    assert (await sandbox.wait_ack(second))["code"] == 200
    await sandbox.wait_reply(data)
    await converse(sandbox, sandbox.chat("help", user.staff_id))  # later than any second reply would be

    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    assert len(sandbox.replies_to(data)) == 1


async def test_every_reply_route_logs_one_structured_line_per_message(sandbox: Sandbox, bot: BotProcess) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id)
    await converse(sandbox, data)

    entry = await bot.wait_log("message handled", msg_id=data["msgId"])
    assert entry["command"] == "help" and entry["outcome"] == "help" and entry["route"] == "webhook"
    assert entry["conversation"] == "1:1" and isinstance(entry["latency_ms"], float)
    assert len([e for e in bot.logs("message handled") if e["msg_id"] == data["msgId"]]) == 1


async def test_the_bot_opened_its_stream_connection_through_the_gateway(sandbox: Sandbox) -> None:
    [gateway, *_] = sandbox.calls("gateway")

    assert gateway.method == "POST" and gateway.raw_path == "/v1.0/gateway/connections/open"
    body = gateway.json()
    assert body["clientId"] == sandbox.client_id and body["clientSecret"] == sandbox.client_secret
    assert body["subscriptions"] == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
    assert body["ua"].startswith("dingtalk-sdk-python/v0.24.3")


async def test_many_messages_with_a_rejected_token_share_one_refresh(sandbox: Sandbox) -> None:
    users = [new_user(sandbox) for _ in range(12)]
    calendars = [new_calendar(sandbox, user) for user in users]
    sandbox.expire_tokens()
    tokens_before = len(sandbox.calls("accessToken"))
    messages = [sandbox.chat(f"unsubscribe {c}", u.staff_id) for u, c in zip(users, calendars, strict=True)]

    for data in messages:
        await sandbox.push(data)
    replies = [await sandbox.wait_reply(data) for data in messages]

    assert [card(reply)["title"] for reply in replies] == ["✅ Unsubscribed"] * len(messages)
    assert len(sandbox.calls("accessToken")) == tokens_before + 1


async def test_system_pings_are_answered_with_their_opaque_and_odd_frames_do_not_stop_the_bot(sandbox: Sandbox) -> None:
    ping = await sandbox.push_system("ping", {"opaque": "opaque-123"})
    ack = await sandbox.wait_ack(ping)
    assert ack["code"] == 200 and json.loads(ack["data"]) == {"opaque": "opaque-123"}

    await sandbox.push_raw("this is not json")
    await sandbox.push_raw(
        json.dumps(
            {
                "type": "CALLBACK",
                "headers": {"messageId": "bad-data", "topic": "/v1.0/im/bot/messages/get"},
                "data": "{not json",
            }
        )
    )
    await sandbox.push_raw(
        json.dumps({"type": "CALLBACK", "headers": {"messageId": "other-topic", "topic": "/v1.0/x"}, "data": "{}"})
    )
    await sandbox.push_raw(
        json.dumps({"type": "EVENT", "headers": {"messageId": "an-event", "topic": "*"}, "data": "{}"})
    )
    assert (await sandbox.wait_ack("bad-data"))["code"] == 200
    assert (await sandbox.wait_ack("other-topic"))["code"] == 404
    assert json.loads((await sandbox.wait_ack("an-event"))["data"])["status"] == "SUCCESS"

    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    assert card(reply)["title"] == "📅 Calendar bot"


async def test_buttons_over_dingtalks_button_list_limit_become_links_in_the_cards_body(sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    # five buttons whose links are each well under 500 characters, but together over btn_json_list's 1,000
    calendar_ids = [f"cal-{user.staff_id}-{n}-" + "x" * 150 for n in range(5)]
    for number, calendar_id in enumerate(calendar_ids):
        sandbox.add_calendar(calendar_id, f"Team {number}")
        sandbox.subscribe(user.union_id, calendar_id)
    data = sandbox.chat("list", user.staff_id)

    _, reply = await converse(sandbox, data)

    assert reply.api == "webhook" and sandbox.replies_to(data) == [reply]  # accepted: no second route
    body = card(reply)
    assert "btns" not in body
    for calendar_id in calendar_ids:
        assert f"{SEND_AS_USER}unsubscribe%20%22{quote(calendar_id, safe='')}%22)" in body["text"]
