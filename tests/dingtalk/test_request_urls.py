"""URLs built for DingTalk calls without httpx's parser are the URLs httpx's parser makes of the same text."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from bot.auth.api import _segment
from bot.dingtalk.client import request_url

BASES = [
    "https://api.dingtalk.com",
    "https://oapi.dingtalk.com:443",
    "http://127.0.0.1:8123",
    "http://[::1]:9000",
    "http://sandbox.local/prefix",
    "http://user:pw@sandbox.local",
    "HTTP://Sandbox.Local",
    "http://sandbox.local?x=1",
    "http://sandbox.local#f",
]
HOSTILE = ["cal-holidays", "..", ".", "a/../b", "a b", "%2e%2e", "%zz", "?q=1", "#frag", "日历", "a\\b", "~._-", "x%41"]
HOSTILE += ["", "a@b", "a:b", "%", "%4", "x%4g", "%41%", "a.b", "/.x"]


def _parsed(url: httpx.URL | str) -> httpx.URL:
    return url if isinstance(url, httpx.URL) else httpx.URL(url)


def _same(built: httpx.URL, expected: httpx.URL) -> None:
    assert built._uri_reference == expected._uri_reference
    assert (built.raw_path, built.host, built.port, built.query, str(built)) == (
        expected.raw_path,
        expected.host,
        expected.port,
        expected.query,
        str(expected),
    )


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_url_built_without_the_parser_is_what_the_parser_makes(base: str, value: str) -> None:
    for rest in (
        f"/v1.0/calendar/users/{quote(value, safe='')}/calendars",  # as _segment makes it (it refuses dot segments)
        f"/v1.0/{value}/x",
        f"/{value}",
        f"/robot/sendBySession?session={quote(value, safe='')}",
        f"/robot/sendBySession?session={value}",
        f"/robot/sendBySession?{value}",
    ):
        url = f"{base}{rest}"
        _same(_parsed(request_url(url)), httpx.URL(url))


@pytest.mark.parametrize(
    "url",
    [
        "https://api.dingtalk.com/v1.0/calendar/users/union-1/calendars/cal%2Fholidays/unsubscribe",
        "https://oapi.dingtalk.com/robot/sendBySession?session=c5a1e6f0b6b0f2a5d0e8f1c2b3a4d5e6",
    ],
)
def test_the_usual_urls_are_built_without_the_parser(url: str) -> None:
    # the fast path is taken for the URLs the bot calls per command (else the per-call parse this avoids comes back)
    assert isinstance(request_url(url), httpx.URL)
    _same(_parsed(request_url(url)), httpx.URL(url))


@pytest.mark.parametrize("value", [*HOSTILE, "abc123", "ABC", "z21HjQliSzpw0YWCNxmiiiiiEiE", "١٢٣", "ǅ", "a-b"])
def test_a_segment_is_what_quote_makes_of_it(value: str) -> None:
    if value in (".", ".."):  # a dot segment is refused (tests/auth/test_segment_attack.py)
        return
    assert _segment(value) == quote(value, safe="")
