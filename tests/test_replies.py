"""Reply bodies and the webhook trust rule: pure functions."""

from __future__ import annotations

import pytest

from bot.cards.delivery import robot_message, webhook_body, webhook_is_trusted
from bot.dingtalk.errors import (
    ConnectFailed,
    ConnectionLost,
    Failure,
    MalformedAnswer,
    OutOfDescriptors,
    OutOfTime,
    Refused,
    TimedOut,
    UnreadableAnswer,
    UnusableUrl,
    retry_delay,
)
from bot.models import Button, Card
from bot.stream.transport import _backoff

CARD = Card("Title", "### Title\nbody")
BUTTONS = tuple(Button(f"B{n}", f"dtmd://dingtalkclient/sendMessage?content=b{n}") for n in range(1, 8))


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://oapi.dingtalk.com/robot/sendBySession?session=x", True),
        ("https://api.dingtalk.io/robot/sendBySession?session=x", True),
        ("http://oapi.dingtalk.com/robot/sendBySession", False),
        ("https://oapi.dingtalk.com:8443/robot/sendBySession", False),
        ("https://oapi.dingtalk.com.evil.example/robot", False),
        ("https://evil.example/oapi.dingtalk.com", False),
        ("https://user@evil.example/", False),
        ("http://127.0.0.1:5000/robot/sendBySession", True),
        ("http://127.0.0.1:5001/robot/sendBySession", False),
        ("http://localhost:5000/robot/sendBySession", False),
        ("http://127.0.0.1:5000@evil.example/robot/sendBySession", False),
        ("http://127.0.0.1:5000/robot/sendBySession?session=a\u0000b", False),
        ("https://oapi.dingtalk.com:99999/robot/sendBySession", False),
        ("https://oapi.dingtalk.com:x/robot/sendBySession", False),
        ("http://[::1/robot", False),
        ("", False),
    ],
)
def test_webhook_is_trusted(url: str, trusted: bool) -> None:
    assert webhook_is_trusted(url, "http://127.0.0.1:5000") is trusted


def test_a_card_without_buttons_is_markdown() -> None:
    assert webhook_body(CARD) == {"msgtype": "markdown", "markdown": {"title": "Title", "text": "### Title\nbody"}}


def test_a_group_reply_mentions_the_sender() -> None:
    body = webhook_body(CARD, "0147xx8602")
    assert body["at"] == {"atUserIds": ["0147xx8602"], "isAtAll": False}
    assert body["markdown"]["text"].endswith("\n\n@0147xx8602")


def test_an_odd_staff_id_is_not_mentioned() -> None:
    assert "at" not in webhook_body(CARD, "x) [y](z")


def test_buttons_make_an_action_card() -> None:
    body = webhook_body(Card("T", "m", BUTTONS[:3]))
    assert body["msgtype"] == "actionCard"
    assert body["actionCard"]["btns"] == [{"title": b.title, "actionURL": b.url} for b in BUTTONS[:3]]


@pytest.mark.parametrize("count", range(6))
def test_robot_message_picks_the_template_by_button_count(count: int) -> None:
    msg_key, param = robot_message(Card("T", "m", BUTTONS[:count]))
    expected_key = {0: "sampleMarkdown", 1: "sampleActionCard"}.get(count, f"sampleActionCard{count}")
    assert msg_key == expected_key and param["title"] == "T" and param["text"] == "m"
    if count == 1:
        assert (param["singleTitle"], param["singleURL"]) == (BUTTONS[0].title, BUTTONS[0].url)
    for n in range(1, count + 1 if count > 1 else 1):
        assert (param[f"actionTitle{n}"], param[f"actionURL{n}"]) == (BUTTONS[n - 1].title, BUTTONS[n - 1].url)


@pytest.mark.parametrize(
    ("error", "temporary", "token_rejected"),
    [
        (ConnectFailed("ConnectError"), True, False),
        (Refused(503, "HTTP503"), True, False),
        (Refused(429, "system.busy"), True, False),
        (Refused(403, "Forbidden.AccessDenied.QpsLimitForApi"), True, False),
        (Refused(200, "90018"), True, False),
        (Refused(200, "-1"), True, False),
        (Refused(400, "InvalidAuthentication"), False, True),
        (Refused(401, "Unauthorized"), False, True),
        (Refused(200, "88", sub_code="40014"), False, True),
        (Refused(200, "40014"), False, True),
        (Refused(400, "permissionDenied"), False, False),
        (Refused(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"), False, False),
        (Refused(400, "send.too.fast"), True, False),
        (Refused(400, "send.byToken.tooFast"), True, False),
        (Refused(400, "too.many.group"), True, False),
        (Refused(400, "too.many.people"), True, False),
        (Refused(400, "toomuch.msg"), True, False),
        (Refused(200, "flowControlledStaffIdList"), True, False),
        (Refused(200, "invalidStaffIdList"), False, False),
        (MalformedAnswer("no processQueryKey in the answer"), True, False),
        (Refused(200, "internalError"), True, False),
        (Refused(403, "Forbidden.AccessDenied.ApiCountLimitForOrg"), False, False),
        (Refused(429, "Forbidden.AccessDenied.ApiCountLimitForOrg"), False, False),
        (UnusableUrl(), False, False),
    ],
)
def test_dingtalk_error_classes(error: Failure, temporary: bool, token_rejected: bool) -> None:
    assert (error.is_temporary, error.is_token_rejected) == (temporary, token_rejected)


@pytest.mark.parametrize(
    ("error", "safe"),
    [
        (Refused(500, "HTTP500"), True),
        (Refused(400, "send.too.fast"), True),
        (Refused(200, "flowControlledStaffIdList"), True),
        (ConnectFailed("ConnectError"), True),
        (TimedOut("ReadTimeout"), False),
        (ConnectionLost("RemoteProtocolError"), False),
        (UnreadableAnswer("AnswerTooLarge", "the answer is over 2097152 bytes"), False),
        (MalformedAnswer("no processQueryKey in the answer"), False),
        (OutOfTime(), False),
        (OutOfDescriptors(), True),
    ],
)
def test_only_a_send_that_surely_did_not_arrive_is_sent_again(error: Failure, safe: bool) -> None:
    assert error.is_safe_to_resend is safe


@pytest.mark.parametrize("attempt", range(1, 10))
def test_retry_delays_back_off_and_wait_a_second_after_throttling(attempt: int) -> None:
    ceiling = min(4.0, 0.25 * 2 ** (attempt - 1))
    for _ in range(50):
        assert ceiling / 2 <= retry_delay(attempt, throttled=False) <= ceiling
        assert 1.0 <= retry_delay(attempt, throttled=True) <= 1.0 + ceiling


@pytest.mark.parametrize(("failures", "low", "high"), [(0, 0.5, 1.0), (1, 0.5, 1.0), (3, 2.0, 4.0), (20, 30.0, 60.0)])
def test_reconnect_backoff_starts_within_a_second_and_is_capped_at_a_minute(
    failures: int, low: float, high: float
) -> None:
    for _ in range(50):
        assert low <= _backoff(failures) <= high
