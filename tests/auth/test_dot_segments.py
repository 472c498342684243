"""A calendar id or unionId is exactly one path segment of the URL the bot sends, whatever it holds."""

from __future__ import annotations

import httpx
import pytest

from bot.auth.api import _segment
from bot.dingtalk.client import request_url
from bot.dingtalk.errors import UnusableUrl

BASE = "https://api.dingtalk.com/v1.0/calendar/users/u1/calendars/"


@pytest.mark.parametrize("value", ["../x", "%2F", "a/b", "a?b", "a#b", "é", "ABC123", "x" * 3000, "a\\b"])
def test_a_value_is_one_segment_of_the_path_httpx_sends(value: str) -> None:
    url = request_url(f"{BASE}{_segment(value)}/unsubscribe")
    path = (url if isinstance(url, httpx.URL) else httpx.URL(url)).raw_path.decode()
    prefix, _, rest = path.partition("/calendars/")
    assert prefix == "/v1.0/calendar/users/u1"
    segment, _, tail = rest.partition("/")
    assert tail == "unsubscribe" and segment not in ("", ".", "..")


@pytest.mark.parametrize("value", ["..", "."])
def test_a_dot_segment_is_refused_not_sent(value: str) -> None:
    # "/calendars/../unsubscribe" would be sent as "/users/u1/unsubscribe" (httpx removes dot segments)
    with pytest.raises(UnusableUrl):
        _segment(value)
