"""DingTalk's real HTTP answers to the real bot: odd 2xx bodies, undelivered sends, throttles, huge or
trickling answers, and replies that arrive once and in time."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.sandbox.answers import (
    cut_off_answer,
    gzip_answer,
    json_answer,
    late_answer,
    raw_answer,
    trickle_answer,
)
from bot.sandbox.http import Recorded, Responder
from bot.sandbox.platform import Sandbox
from tests.botinprocess import BotInProcess
from tests.helpers import card, new_calendar, new_user, running_bot, started_sandbox, unsubscribe_calls

COMMAND_TIMEOUT = 3.0  # the reply's budget too: the webhook gets at most half of it, more than HTTP_TIMEOUT
HTTP_TIMEOUT = 1.0
ENV = {
    "LOG_LEVEL": "DEBUG",
    "BOT_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
    "BOT_HTTP_TIMEOUT": str(HTTP_TIMEOUT),
    "BOT_RETRY_PAUSE_SCALE": "0.01",  # retries pause 10-50 ms instead of the production 1-5 s
}
QUOTA = "Forbidden.AccessDenied.ApiCountLimitForOrg"
BUSY = "⏳ DingTalk is busy"
UNANSWERED = "card unanswered: it may have been delivered, so it is not sent again"
NOT_DELIVERED = "card not delivered: every route and retry failed"
UNDELIVERED = ["invalidStaffIdList", "filteredStaffIdList"]


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


@pytest_asyncio.fixture(scope="module")
async def bot(sandbox: Sandbox) -> AsyncIterator[BotInProcess]:
    async with running_bot(sandbox, ENV) as process:
        yield process
        assert await process.stop() == 0


async def handled(sandbox: Sandbox, bot: BotInProcess, data: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Push a message, wait for its ACK and for the bot's one "message handled" line (its reply is sent by then)."""
    await sandbox.wait_ack(await sandbox.push(data))
    return await bot.wait_log("message handled", timeout=timeout, msg_id=data["msgId"])


def title(reply: Recorded) -> str:
    """The title of a reply by any route: webhook markdown or actionCard, or a robot OpenAPI msgParam."""
    body = reply.json()
    if "msgParam" in body:
        return str(json.loads(body["msgParam"])["title"])
    return str(card(reply)["title"])


# --- 1. batchSend answers 200 without delivering ---------------------------------------------------------------


async def test_a_flow_controlled_receiver_is_sent_to_again_within_the_reply_budget(
    sandbox: Sandbox, bot: BotInProcess
) -> None:
    user = new_user(sandbox)
    sandbox.refuse_receiver(user.staff_id, "flowControlledStaffIdList", times=2)
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1)

    entry = await handled(sandbox, bot, data)

    sends = sandbox.replies_to(data)
    assert [r.api for r in sends] == ["batchSend"] * 3
    assert sandbox.delivered(data) == [sends[-1]] and title(sends[-1]) == "📅 Calendar bot"
    assert entry["route"] == "openapi" and entry["retries"] == 2


@pytest.mark.parametrize("listed_in", UNDELIVERED)
async def test_an_undeliverable_receiver_in_a_one_to_one_chat_is_a_failed_reply_not_resent(
    sandbox: Sandbox, bot: BotInProcess, listed_in: str
) -> None:
    user = new_user(sandbox)
    sandbox.refuse_receiver(user.staff_id, listed_in, times=5)
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1)

    entry = await handled(sandbox, bot, data)

    assert [r.api for r in sandbox.replies_to(data)] == ["batchSend"]
    assert sandbox.delivered(data) == []
    assert (entry["route"], entry["reply_code"]) == ("failed", listed_in)


@pytest.mark.parametrize("listed_in", UNDELIVERED)
async def test_when_the_private_card_is_not_delivered_the_group_gets_the_card_itself(
    sandbox: Sandbox, bot: BotInProcess, listed_in: str
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.refuse_receiver(user.staff_id, listed_in)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, group=True)

    entry = await handled(sandbox, bot, data)

    [private] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    assert private in sandbox.undelivered
    [in_group] = sandbox.delivered(data)
    assert in_group.api == "webhook" and card(in_group)["title"] == "✅ Unsubscribed"
    assert entry["route"] == "group-fallback:webhook"


async def test_a_private_card_without_an_answer_is_neither_sent_to_the_group_nor_announced_there(
    sandbox: Sandbox, bot: BotInProcess
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.never_answer("batchSend")
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, group=True)

    entry = await handled(sandbox, bot, data)

    [private] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    assert json.loads(private.json()["msgParam"])["title"] == "✅ Unsubscribed"
    assert sandbox.replies_to(data) == []  # the user may have it privately: nothing more, not even the notice
    assert entry["route"] == "private:unanswered"
    [line] = [line for line in bot.logs(UNANSWERED) if line["msg_id"] == data["msgId"]]
    assert (line["route"], line["reply_code"]) == ("private", "ReadTimeout")


async def test_a_private_card_whose_new_token_never_comes_was_not_sent_so_the_group_gets_it() -> None:
    # the private send's token is rejected, the new one never comes: the card was not sent (the token fetch went
    # unanswered, not the send), so it is no "card unanswered, maybe delivered": the group gets it by the webhook
    async with started_sandbox() as sandbox, running_bot(sandbox, ENV) as bot:
        user = new_user(sandbox)
        calendar_id = new_calendar(sandbox, user)
        await handled(sandbox, bot, sandbox.chat("list", user.staff_id))  # the app's token is fetched and kept
        sandbox.fail_next("batchSend", 401, {"code": "InvalidAuthentication", "message": "token expired"})
        sandbox.never_answer("accessToken", times=100)
        data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, group=True)

        entry = await handled(sandbox, bot, data)

        assert len(sandbox.calls("accessToken")) >= 2
        [in_group] = sandbox.delivered(data)
        assert in_group.api == "webhook" and card(in_group)["title"] == "✅ Unsubscribed"
        assert entry["route"] == "group-fallback:webhook"
        assert not bot.logs(UNANSWERED)


async def test_a_receiver_flow_controlled_for_good_gets_the_card_in_the_group_within_the_budget(
    sandbox: Sandbox, bot: BotInProcess
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.refuse_receiver(user.staff_id, "flowControlledStaffIdList", times=1000)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id, group=True)

    entry = await handled(sandbox, bot, data)

    privately = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    assert len(privately) >= 2  # retried as a throttle
    [in_group] = sandbox.delivered(data)
    assert card(in_group)["title"] == "✅ Unsubscribed"
    assert in_group.received_at - privately[0].received_at < COMMAND_TIMEOUT
    assert entry["route"] == "group-fallback:webhook"


# --- 2. the robot API's own throttle codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["send.too.fast", "send.byToken.tooFast", "too.many.group", "too.many.people", "toomuch.msg"]
)
async def test_the_robot_apis_throttle_answers_are_retried(sandbox: Sandbox, bot: BotInProcess, code: str) -> None:
    user = new_user(sandbox)
    sandbox.fail_next("batchSend", 400, {"code": code, "message": "throttled", "requestid": "R"})
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1)

    entry = await handled(sandbox, bot, data)

    first, second = sandbox.replies_to(data)
    assert sandbox.delivered(data) == [second]
    assert second.received_at - first.received_at < 0.9  # BOT_RETRY_PAUSE_SCALE: not the production second (≥ 1 s)
    assert entry["route"] == "openapi" and entry["retries"] == 1


# --- 3. errcode "0" -----------------------------------------------------------------------------------------------


async def test_errcode_zero_as_a_string_is_success(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    result = {"userid": user.staff_id, "unionid": user.union_id}
    sandbox.fail_next("user/get", 200, {"errcode": "0", "errmsg": "ok", "result": result, "request_id": "r"})
    sandbox.fail_next("webhook", 200, {"errcode": "0", "errmsg": "ok"})
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.replies_to(data)
    assert reply.api == "webhook" and card(reply)["title"] == "✅ Unsubscribed"
    assert (entry["outcome"], entry["route"]) == ("unsubscribed", "webhook")


# --- 4. robotCode ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [False, True], ids=["1:1", "group"])
async def test_the_robot_openapi_sends_as_the_messages_own_robot(
    sandbox: Sandbox, bot: BotInProcess, group: bool
) -> None:
    sandbox.robot_codes = {"dingisvrobot0001"}  # an ISV robot: its code is not the app key
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id, group=group, webhook_expires_in=-1, robotCode="dingisvrobot0001")

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.delivered(data)
    assert reply.api == ("groupSend" if group else "batchSend")
    assert reply.json()["robotCode"] == "dingisvrobot0001" and entry["route"] == "openapi"


async def test_a_message_without_a_robot_code_is_answered_as_the_app(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1, robotCode=None)

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.delivered(data)
    assert reply.json()["robotCode"] == sandbox.client_id and entry["route"] == "openapi"


async def test_the_sandbox_refuses_a_robot_code_the_app_does_not_own(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id, webhook_expires_in=-1, robotCode="dingsomeoneelse")

    entry = await handled(sandbox, bot, data)

    [refused] = sandbox.replies_to(data)
    assert refused.json()["robotCode"] == "dingsomeoneelse"
    assert (entry["route"], entry["reply_code"]) == ("failed", "invalidParameter.robotCode.auth")


# --- 5. the organization's monthly quota ----------------------------------------------------------------------------


async def test_the_organizations_monthly_quota_used_up_is_never_retried(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.fail_next("unsubscribe", 403, {"code": QUOTA, "message": "api count limit"}, times=10)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    entry = await handled(sandbox, bot, data)

    assert len(unsubscribe_calls(sandbox, user.union_id)) == 1
    assert entry["code"] == QUOTA and entry["retries"] == 0
    assert title(sandbox.delivered(data)[0]) != BUSY


# --- 6. answers capped in size and time -----------------------------------------------------------------------------


async def test_a_compressed_answer_is_read(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user, "Holidays")
    listed = {"response": {"calendars": [{"id": calendar_id, "summary": "Holidays", "type": "subscribed"}]}}
    sandbox.answer_next("calendars", gzip_answer(listed))
    data = sandbox.chat("list", user.staff_id)

    entry = await handled(sandbox, bot, data)

    assert entry["outcome"] == "calendars" and calendar_id in card(sandbox.delivered(data)[0])["text"]
    assert entry["retries"] == 0  # the compressed answer itself was read


@pytest.mark.parametrize("api", ["calendars", "webhook"])
async def test_a_trickling_answer_is_cut_off_at_the_http_timeout(sandbox: Sandbox, bot: BotInProcess, api: str) -> None:
    user = new_user(sandbox)
    answer = {"response": {"calendars": []}} if api == "calendars" else {"errcode": 0, "errmsg": "ok" + " " * 100}
    sandbox.answer_next(api, trickle_answer(answer, interval=0.3), times=100)  # 30 s for the whole answer
    data = sandbox.chat("list", user.staff_id)
    await sandbox.push(data)

    entry = await bot.wait_log("message handled", timeout=COMMAND_TIMEOUT * 2 + 2, msg_id=data["msgId"])

    if api == "calendars":
        assert title(sandbox.delivered(data)[0]) == BUSY and entry["code"] == "ReadTimeout"
    else:  # the post may have been delivered: never sent again, by any route
        assert [r.api for r in sandbox.replies_to(data)] == ["webhook"]
        assert entry["route"] == "webhook:unanswered"


async def test_a_trickling_gateway_answer_does_not_hold_the_connection() -> None:
    async with started_sandbox() as sandbox:
        sandbox.answer_next("gateway", trickle_answer({"endpoint": "x" * 100, "ticket": "t"}, interval=0.3))
        async with running_bot(sandbox, ENV):  # waits (10 s at most) for the connection; the trickle takes 36 s
            gateway = sandbox.calls("gateway")
            assert len(gateway) == 2 and gateway[1].received_at - gateway[0].received_at < HTTP_TIMEOUT + 1.5


# --- 7. replies: once, and in time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [False, True], ids=["1:1", "group"])
async def test_a_webhook_that_keeps_failing_is_retried_while_its_share_allows_then_the_robot_openapi(
    sandbox: Sandbox, bot: BotInProcess, group: bool
) -> None:
    user = new_user(sandbox)
    sandbox.fail_next("webhook", 500, {"errcode": -1, "errmsg": "system busy"}, times=1000)
    data = sandbox.chat("help", user.staff_id, group=group)
    pushed = time.monotonic()

    entry = await handled(sandbox, bot, data)

    *webhooks, fallback = sandbox.replies_to(data)
    assert {reply.api for reply in webhooks} == {"webhook"} and len(webhooks) == entry["retries"] + 1 >= 3
    assert fallback.api == ("groupSend" if group else "batchSend") and title(fallback) == "📅 Calendar bot"
    # tried with backoff while the webhook's half of the reply's time lasted (the last try needs 0.25 s), no longer
    assert COMMAND_TIMEOUT / 2 - 0.5 < fallback.received_at - pushed < COMMAND_TIMEOUT
    assert entry["route"] == "webhook-failed:openapi"


WEBHOOK_SILENCES = {
    "slow": lambda sandbox: sandbox.answer_next("webhook", late_answer(1.5, {"errcode": 0, "errmsg": "ok"})),
    "never": lambda sandbox: sandbox.never_answer("webhook"),
    "cut off": lambda sandbox: sandbox.answer_next("webhook", cut_off_answer({"errcode": 0, "errmsg": "ok"})),
}


@pytest.mark.parametrize("group", [False, True], ids=["1:1", "group"])
@pytest.mark.parametrize("silence", WEBHOOK_SILENCES)
async def test_a_webhook_post_without_an_answer_is_never_sent_again_by_any_route(
    sandbox: Sandbox, bot: BotInProcess, silence: str, group: bool
) -> None:
    user = new_user(sandbox)
    WEBHOOK_SILENCES[silence](sandbox)
    data = sandbox.chat("help", user.staff_id, group=group)

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.replies_to(data)  # DingTalk may have it: a second card is never risked
    assert sandbox.delivered(data) == [reply] and reply.api == "webhook"  # it took the card, the answer was lost
    assert entry["route"] == "webhook:unanswered"
    [line] = [line for line in bot.logs(UNANSWERED) if line["msg_id"] == data["msgId"]]
    assert (line["level"], line["route"]) == ("warning", "webhook")
    assert not [line for line in bot.logs(NOT_DELIVERED) if line["msg_id"] == data["msgId"]]


async def test_a_webhook_that_never_answers_is_given_up_at_its_share_of_the_reply_budget() -> None:
    """With the production ratio (an HTTP timeout as long as the budget's webhook share or longer), the webhook
    cannot hold the command for its whole HTTP timeout: it ends at its half of the reply's budget."""
    env = {**ENV, "BOT_COMMAND_TIMEOUT": "2", "BOT_HTTP_TIMEOUT": "10"}
    async with started_sandbox() as sandbox, running_bot(sandbox, env) as bot:
        user = new_user(sandbox)
        sandbox.never_answer("webhook")
        data = sandbox.chat("help", user.staff_id)

        entry = await handled(sandbox, bot, data)

        [webhook] = sandbox.replies_to(data)
        assert 0.9 < time.monotonic() - webhook.received_at < 1.5
        assert entry["route"] == "webhook:unanswered"


@pytest.mark.parametrize("group", [False, True], ids=["1:1", "group"])
async def test_a_robot_openapi_send_without_an_answer_is_not_sent_again(
    sandbox: Sandbox, bot: BotInProcess, group: bool
) -> None:
    user = new_user(sandbox)
    sandbox.answer_next("groupSend" if group else "batchSend", late_answer(60, {"processQueryKey": "k"}), times=10)
    data = sandbox.chat("help", user.staff_id, group=group, webhook_expires_in=-1)

    entry = await handled(sandbox, bot, data)

    assert len(sandbox.replies_to(data)) == 1  # it may have been delivered: never a second copy
    assert entry["route"] == "openapi:unanswered"
    [line] = [line for line in bot.logs(UNANSWERED) if line["msg_id"] == data["msgId"]]
    assert (line["route"], line["reply_code"]) == ("openapi", "ReadTimeout")


async def test_a_command_that_used_up_its_time_still_gets_its_card_after_a_failing_webhook(
    sandbox: Sandbox, bot: BotInProcess
) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    sandbox.fail_next("unsubscribe", 503, {"code": "ServiceUnavailable"}, times=1000)
    sandbox.fail_next("webhook", 500, {"errcode": -1, "errmsg": "busy"}, times=1000)
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.delivered(data)[-1:]
    assert reply.api == "batchSend" and title(reply) == BUSY
    assert entry["route"] == "webhook-failed:openapi"


WEBHOOK_BODIES_WITHOUT_ERRCODE: dict[str, Callable[[Sandbox], None]] = {
    "empty": lambda sandbox: setattr(sandbox, "webhook_without_errcode", True),
    "text": lambda sandbox: sandbox.answer_next("webhook", raw_answer(200, "ok", "text/plain")),
    "HTML": lambda sandbox: sandbox.answer_next("webhook", raw_answer(200, "<html><body>OK</body></html>")),
    "JSON array": lambda sandbox: sandbox.answer_next("webhook", json_answer(200, [])),
    "204": lambda sandbox: sandbox.answer_next("webhook", raw_answer(204, "", "application/json")),
}


@pytest.mark.parametrize("group", [False, True], ids=["1:1", "group"])
@pytest.mark.parametrize("body", WEBHOOK_BODIES_WITHOUT_ERRCODE)
async def test_a_webhook_answering_2xx_without_errcode_delivered_the_card_no_second_copy(
    sandbox: Sandbox, bot: BotInProcess, group: bool, body: str
) -> None:
    user = new_user(sandbox)
    WEBHOOK_BODIES_WITHOUT_ERRCODE[body](sandbox)  # the official SDK reads only the status (raise_for_status)
    data = sandbox.chat("help", user.staff_id, group=group)
    unexpected = len(bot.logs("unexpected answer from DingTalk"))

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.replies_to(data)
    assert (reply.api, title(reply), entry["route"]) == ("webhook", "📅 Calendar bot", "webhook")
    assert len(bot.logs("unexpected answer from DingTalk")) == unexpected


@pytest.mark.parametrize(
    "webhook",
    [
        "{base}/robot/sendBySession?session=a\u0000b",
        "{base}:99999/robot/sendBySession?session=x",
        "https://oapi.dingtalk.com:99999/robot/sendBySession?session=x",
        "http://[::1/robot/sendBySession",
    ],
    ids=["NUL", "configured host, port out of range", "DingTalk host, port out of range", "bad IPv6"],
)
async def test_a_malformed_session_webhook_falls_back_to_the_robot_openapi(
    sandbox: Sandbox, bot: BotInProcess, webhook: str
) -> None:
    user = new_user(sandbox)
    base = sandbox.base_url.rpartition(":")[0] if ":99999" in webhook else sandbox.base_url
    data = sandbox.chat("help", user.staff_id, sessionWebhook=webhook.format(base=base))

    entry = await handled(sandbox, bot, data)

    [reply] = sandbox.delivered(data)
    assert reply.api == "batchSend" and title(reply) == "📅 Calendar bot"
    assert entry["route"] == "openapi"


@pytest.mark.parametrize("field", ["errcode", "errmsg", "request_id"])
async def test_a_webhook_answer_nested_too_deep_to_print_falls_back_to_the_robot_openapi(
    sandbox: Sandbox, bot: BotInProcess, field: str
) -> None:
    user = new_user(sandbox)
    data = sandbox.chat("help", user.staff_id)
    # str() of a value nested this deep recursed past Python's limit: "reply failed", and no card at all
    answer = {"errcode": 310000, "errmsg": "x", "request_id": "r", field: "@deep@"}
    deep_answer = json.dumps(answer).replace('"@deep@"', "[" * 990 + "]" * 990)
    sandbox.answer_next("webhook", raw_answer(200, deep_answer, "application/json"))

    entry = await handled(sandbox, bot, data)

    [refused, reply] = sandbox.replies_to(data)  # the sandbox cannot tell this 200 refused the webhook post
    assert (refused.api, reply.api, title(reply)) == ("webhook", "batchSend", "📅 Calendar bot")
    assert entry["route"] == "webhook-failed:openapi" and "Traceback" not in bot.output


# --- 8. 2xx answers that are not the documented shape -----------------------------------------------------------------


ODD_ANSWERS = [
    ("calendars", raw_answer(200, "<html><body>upstream busy</body></html>"), "not a JSON object (text/html"),
    ("calendars", json_answer(200, {}), "no response.calendars"),
    ("user/get", json_answer(200, {"errcode": 0, "errmsg": "ok"}), "no result.unionid"),
    ("accessToken", json_answer(200, {"expireIn": 7200}), "no accessToken"),
]


@pytest.mark.parametrize(
    ("api", "answer", "problem"),
    ODD_ANSWERS,
    ids=["calendars HTML", "calendars {}", "user/get without result", "token without accessToken"],
)
async def test_an_odd_2xx_answer_is_an_error_logged_and_retried(
    sandbox: Sandbox, bot: BotInProcess, api: str, answer: Responder, problem: str
) -> None:
    user = new_user(sandbox)
    if api == "accessToken":
        sandbox.expire_tokens()  # the bot's token is rejected: it fetches a new one
    sandbox.answer_next(api, answer, times=2)
    data = sandbox.chat("list", user.staff_id)
    calls_before = len(sandbox.calls(api))

    entry = await handled(sandbox, bot, data)

    assert entry["outcome"] == "no_calendars"  # the third call got the documented answer
    assert len(sandbox.calls(api)) - calls_before == 3
    logged = [line for line in bot.logs("unexpected answer from DingTalk") if line["api"] == api]
    assert len([line for line in logged if problem in line["problem"]]) >= 2
    assert not any(secret in bot.output for secret in sandbox.issued_secrets)


async def test_an_odd_2xx_answer_that_persists_gets_the_temporary_problem_card(
    sandbox: Sandbox, bot: BotInProcess
) -> None:
    user = new_user(sandbox)
    sandbox.answer_next("calendars", raw_answer(200, "<html>busy</html>"), times=1000)
    data = sandbox.chat("list", user.staff_id)

    entry = await handled(sandbox, bot, data)

    assert title(sandbox.delivered(data)[0]) == BUSY
    assert (entry["outcome"], entry["code"]) == ("temporary_problem", "malformedAnswer")


async def test_an_error_code_in_a_2xx_answer_is_an_error(sandbox: Sandbox, bot: BotInProcess) -> None:
    user = new_user(sandbox)
    calendar_id = new_calendar(sandbox, user)
    throttle = {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "qps", "requestid": "R1"}
    sandbox.fail_next("unsubscribe", 200, throttle)
    sandbox.fail_next("unsubscribe", 200, {"code": "permissionDenied", "message": "not in scope", "requestid": "R2"})
    data = sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id)

    entry = await handled(sandbox, bot, data)  # throttled, then refused: never "unsubscribed"

    assert title(sandbox.delivered(data)[0]) == "🚫 Not in this calendar's subscription scope"
    assert entry["retries"] == 1 and len(unsubscribe_calls(sandbox, user.union_id)) == 2
    assert calendar_id in sandbox.subscriptions[user.union_id]


async def test_a_token_announced_with_no_lifetime_is_still_reused(sandbox: Sandbox, bot: BotInProcess) -> None:
    sandbox.token_lifetime = 0
    sandbox.expire_tokens()
    tokens_before = len(sandbox.calls("accessToken"))
    for _ in range(3):
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id)
        assert (await handled(sandbox, bot, data))["outcome"] == "unsubscribed"

    assert len(sandbox.calls("accessToken")) == tokens_before + 1


def echoing_error() -> Responder:
    """A refusal whose message echoes the whole request, as a proxy's or a gateway's debug page may."""

    async def respond(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        echoed = f"{await request.text()}{token} {request.raw_path}"  # the card shows the first 80 characters
        return web.json_response({"code": "Weird", "message": f"you sent {echoed}", "requestid": "R-ECHO"}, status=400)

    return respond


@pytest.mark.parametrize("api", ["accessToken", "calendars"])
async def test_an_error_that_echoes_the_request_never_shows_a_secret_on_the_card(
    sandbox: Sandbox, bot: BotInProcess, api: str
) -> None:
    user = new_user(sandbox)
    if api == "accessToken":
        sandbox.expire_tokens()  # the bot's token is rejected: it fetches a new one, sending the app secret
    sandbox.answer_next(api, echoing_error())
    data = sandbox.chat("list", user.staff_id)

    await handled(sandbox, bot, data)

    [reply] = sandbox.replies_to(data)
    text = json.dumps(reply.json(), ensure_ascii=False)
    assert "you sent" in text and "redacted" in text  # DingTalk's words are shown, what the bot sent is not
    secrets = [sandbox.client_secret, *sandbox.issued_secrets]
    assert not any(secret in text for secret in secrets)
    assert not any(secret in bot.output for secret in secrets)
