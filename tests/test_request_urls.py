"""URLs built for DingTalk calls without httpx's parser are the URLs httpx's parser makes of the same text."""

from __future__ import annotations

import httpx
import pytest

from bot.api import _segment
from bot.dingtalk import with_path

BASES = ["https://api.dingtalk.com", "http://127.0.0.1:8123", "http://[::1]:9000", "http://sandbox.local/prefix"]
HOSTILE = ["cal-holidays", "..", ".", "a/../b", "a b", "%2e%2e", "%zz", "?q=1", "#frag", "日历", "a\\b", "~._-", "x%41"]


def _parsed(url: httpx.URL | str) -> httpx.URL:
    return url if isinstance(url, httpx.URL) else httpx.URL(url)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_path_built_without_the_parser_is_what_the_parser_makes(base: str, value: str) -> None:
    for path in (f"/v1.0/calendar/users/{_segment(value)}/calendars", f"/v1.0/{value}/x", f"/{value}"):
        built = _parsed(with_path(base, path))
        expected = httpx.URL(f"{base}{path}")
        assert built._uri_reference == expected._uri_reference, path
        assert (built.raw_path, built.host, built.port, str(built)) == (
            expected.raw_path,
            expected.host,
            expected.port,
            str(expected),
        )


def test_the_usual_path_is_built_without_the_parser() -> None:
    # the fast path is taken for the paths api.py builds (else the per-call parse this avoids comes back)
    path = f"/v1.0/calendar/users/{_segment('union-1')}/calendars/{_segment('cal/holidays')}/unsubscribe"
    assert isinstance(with_path("https://api.dingtalk.com", path), httpx.URL)
