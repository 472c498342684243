"""Reply bodies and the webhook trust rule: pure functions."""

from __future__ import annotations

import pytest

from bot.cards.delivery import robot_message, trusted_by_parts, webhook_body, webhook_is_trusted
from bot.models import Button, Card

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


def _by_parts(url: str, oapi_base: str) -> bool:
    """The rule as urlsplit's parts say it, for every URL (what webhook_is_trusted does past its quick starts)."""
    control = any(ord(character) <= 0x20 or character == "\x7f" for character in url)
    return not control and trusted_by_parts(url, oapi_base)


@pytest.mark.parametrize(
    "oapi_base",
    [
        "http://127.0.0.1:5000",
        "HTTP://Host:5000",
        "https://oapi.dingtalk.com",
        "http://h/prefix",
        "http://[::1]:80",
        "",
    ],
)
def test_a_webhook_told_by_its_start_is_trusted_as_its_parts_say(oapi_base: str) -> None:
    urls = [
        "https://oapi.dingtalk.com/robot/sendBySession?session=x",
        "https://oapi.dingtalk.com/",
        "https://oapi.dingtalk.com//x",
        "https://oapi.dingtalk.com@evil.example/",
        "https://oapi.dingtalk.com:443/x",
        "https://OAPI.dingtalk.com/x",
        "https://api.dingtalk.io/x#f",
        "http://127.0.0.1:5000/",
        "http://127.0.0.1:5000/@evil.example",
        "http://127.0.0.1:5000@evil.example/",
        "http://Host:5000/x",
        "http://host:5000/x",
        "http://h/prefix/robot",
        "http://h/robot",
        "http://[::1]:80/x",
        "http://[::1/x",
        "https://oapi.dingtalk.com/x?session=a b",
        "",
    ]
    for url in urls:
        assert webhook_is_trusted(url, oapi_base) is _by_parts(url, oapi_base), url
