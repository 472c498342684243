"""The HTTP transport: per-call timeouts kept in a bounded cache; the URL and headers it builds without parsing them
again are what parsing makes of them."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
import yarl

from bot.dingtalk.client import request_url
from bot.dingtalk.http import (
    AiohttpTransport,
    _client_timeout,
    _client_timeout_of,
    _response,
    _response_headers,
    _target,
    header,
    request,
)
from tests.dingtalk.test_request_urls import BASES, HOSTILE
from tests.helpers import started_sandbox


async def test_http_timeouts_are_cached_in_a_bounded_cache() -> None:
    transport = AiohttpTransport(4)
    async with started_sandbox() as sandbox:
        for number in range(100):  # as calls near the end of their budgets have: each its own limit
            seconds = 5 - number / 1000
            limits = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
            request = httpx.Request("POST", f"{sandbox.base_url}/robot/sendBySession", extensions={"timeout": limits})
            assert (await transport.handle_async_request(request)).status_code == 200
        await transport.aclose()

    assert _client_timeout.cache_info().currsize <= 64
    assert _client_timeout_of.cache_info().currsize <= 64


URLS = [
    "https://api.dingtalk.com/v1.0/calendar/users/union-1/calendars/cal%2Fholidays/unsubscribe",
    "https://oapi.dingtalk.com/topapi/v2/user/get?access_token=t%2Bk",
    "http://127.0.0.1:8123/robot/sendBySession?session=c5a1e6f0",
    "https://oapi.dingtalk.com:443/x",
    "http://[::1]:9000/a?b=1&c",
    "http://[::1]/a",
    "HTTP://Sandbox.Local/prefix/a/../b/./c",
    "http://user:pw@sandbox.local/x",
    "http://sandbox.local/x#frag",
    "http://sandbox.local/x?",
    "http://sandbox.local",
    "http://日本.jp/日历?q=日",
    "http://sandbox.local/a b/%zz?x=a b",
]


@pytest.mark.parametrize("text", URLS)
def test_the_url_handed_to_aiohttp_is_httpx_url_parsed_as_encoded(text: str) -> None:
    # built from httpx's parts, it is what yarl makes of httpx's text of the URL (which the transport once parsed)
    url = httpx.URL(text)
    expected = yarl.URL(str(url), encoded=True)
    built = _target(url)
    assert built == expected
    assert (str(built), built.raw_path_qs, built.host, built.port, built.user) == (
        str(expected),
        expected.raw_path_qs,
        expected.host,
        expected.port,
        expected.user,
    )


def test_an_answer_s_headers_are_what_httpx_makes_of_them() -> None:
    raw = (
        (b"Content-Type", b"application/json;charset=utf-8"),
        (b"x-acs-request-id", b"ABC-1"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=\xe6\x97\xa5"),
    )
    built, expected = _response_headers(raw), httpx.Headers(raw)
    assert built._list == expected._list
    assert built.raw == expected.raw
    assert built.multi_items() == expected.multi_items()
    assert built.get_list("set-cookie") == expected.get_list("set-cookie")
    assert httpx.Response(200, headers=built).headers.raw == httpx.Response(200, headers=expected).headers.raw


@pytest.mark.parametrize("base", BASES)
def test_the_urls_the_client_builds_reach_aiohttp_as_their_text_would(base: str) -> None:
    for value in HOSTILE:
        segment = quote(value, safe="")  # as _segment makes it (which refuses dot segments)
        for text in (f"{base}/v1.0/users/{segment}/x", f"{base}/{value}", f"{base}/s?session={value}"):
            try:
                url = request_url(text)
                url = url if isinstance(url, httpx.URL) else httpx.URL(url)
            except httpx.InvalidURL:
                continue
            assert _target(url) == yarl.URL(str(url), encoded=True)
            assert str(_target(url)) == str(yarl.URL(str(url), encoded=True))


def test_a_header_is_read_as_httpx_reads_it() -> None:
    raw = [(b"Content-Type", b"application/json"), (b"X-Acs-Request-Id", b"A-1"), (b"x-acs-request-id", b"A-2")]
    for response in (httpx.Response(200, headers=raw), httpx.Response(200, headers=_response_headers(tuple(raw)))):
        assert header(response, b"x-acs-request-id") == response.headers["x-acs-request-id"].split(",")[0].encode()
        assert header(response, b"content-type") == b"application/json"
        assert header(response, b"x-missing") is None


def _state(message: httpx.Request | httpx.Response) -> dict[str, object]:
    """Everything httpx's constructor set, the stream by its type and content (a ByteStream has no equality)."""
    state = dict(vars(message))
    stream = state.pop("stream")
    return {**state, "stream": (type(stream), b"".join(stream))}


def test_a_request_is_built_as_httpx_builds_it() -> None:
    url = httpx.URL("https://api.dingtalk.com/v1.0/calendar/users/u1/calendars")
    headers = httpx.Headers({"content-type": "application/json", "x-acs-dingtalk-access-token": "t"})
    extensions = {"timeout": {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}}
    built = request("post", url, headers, b'{"a":1}', dict(extensions))
    expected = httpx.Request("post", url, headers=headers, stream=httpx.ByteStream(b'{"a":1}'), extensions=extensions)
    assert _state(built) == _state(expected)
    assert built.headers is not headers  # a copy, as httpx makes: a token's headers are shared between requests
    assert built.read() == expected.read() == b'{"a":1}'


def test_a_response_is_built_as_httpx_builds_it() -> None:
    sent = httpx.Request("GET", "https://api.dingtalk.com/x")
    raw = ((b"Content-Type", b"application/json"), (b"x-acs-request-id", b"A-1"))
    built = _response(201, _response_headers(raw), b'{"ok":true}', sent)
    expected = httpx.Response(201, headers=raw, stream=httpx.ByteStream(b'{"ok":true}'), request=sent)
    assert _state(built) == _state(expected)
    assert built.read() == expected.read() == b'{"ok":true}'
    assert (built.json(), built.is_success, built.request) == (expected.json(), expected.is_success, sent)
