"""Why a call failed, by kind: the transport's failures over real loopback sockets (TLS, the proxy), each transport
exception as the kind the retries and fallbacks judge, and each kind's card from the one table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from bot.commands.explain import explain_calendar_error, explain_lookup_error
from bot.dingtalk import http, proxies
from bot.dingtalk.client import exchange_failed
from bot.dingtalk.errors import (
    ConnectFailed,
    ConnectionLost,
    DingTalkError,
    Failure,
    MalformedAnswer,
    NoRobotCode,
    NotReady,
    OutOfDescriptors,
    OutOfTime,
    ProxyFailed,
    Refused,
    TimedOut,
    TlsFailed,
    Unreachable,
    UnreadableAnswer,
    UnusableUrl,
    retry_delay,
)
from bot.models import Outcome

REQUEST = httpx.Request("GET", "https://api.dingtalk.com/v1.0/x")


@asynccontextmanager
async def plain_http_server() -> AsyncIterator[int]:
    """A loopback port that answers anything, a TLS hello included, with plain HTTP: no handshake can succeed."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def closed_port() -> int:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def failure_of(url: str) -> DingTalkError | OutOfDescriptors:
    transport = http.AiohttpTransport(connections=2)
    request = httpx.Request("GET", url, extensions={"timeout": {"connect": 5.0, "read": 5.0}})
    try:
        with pytest.raises(httpx.HTTPError) as raised:
            await transport.handle_async_request(request)
    finally:
        await transport.aclose()
    return exchange_failed(raised.value)


async def test_a_failed_tls_handshake_is_a_connect_failure_of_its_own_kind_safe_to_send_again() -> None:
    async with plain_http_server() as port:
        failure = await failure_of(f"https://127.0.0.1:{port}/v1.0/x")

    assert isinstance(failure, TlsFailed) and isinstance(failure, ConnectFailed)
    assert (failure.is_safe_to_resend, failure.is_unanswered, failure.is_temporary) == (True, False, True)


async def test_an_unreachable_proxy_is_a_connect_failure_of_its_own_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{await closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxies.proxy_for.cache_clear()
    try:
        failure = await failure_of("https://api.dingtalk.example/v1.0/x")
    finally:
        proxies.proxy_for.cache_clear()

    assert isinstance(failure, ProxyFailed) and isinstance(failure, ConnectFailed)
    assert failure.is_safe_to_resend


async def test_a_refused_connection_is_a_connect_failure() -> None:
    failure = await failure_of(f"http://127.0.0.1:{await closed_port()}/v1.0/x")

    assert type(failure) is ConnectFailed and failure.code == "ConnectError"


@pytest.mark.parametrize(
    ("raised", "kind", "safe", "unanswered"),
    [
        (http.TooManyOpenFiles("EMFILE", request=REQUEST), OutOfDescriptors, True, False),
        (httpx.ConnectError("refused", request=REQUEST), ConnectFailed, True, False),
        (httpx.ReadTimeout("slow", request=REQUEST), TimedOut, False, True),
        (httpx.WriteTimeout("slow", request=REQUEST), TimedOut, False, True),
        (httpx.RemoteProtocolError("cut", request=REQUEST), ConnectionLost, False, True),
        (http.AnswerTooLarge("too large", request=REQUEST), UnreadableAnswer, False, True),
        (httpx.DecodingError("not gzip", request=REQUEST), UnreadableAnswer, False, True),
        (httpx.ConnectTimeout("slow", request=REQUEST), Unreachable, False, False),
    ],
)
def test_each_transport_failure_is_judged_by_its_kind(
    raised: httpx.HTTPError, kind: type[Exception], safe: bool, unanswered: bool
) -> None:
    failure = exchange_failed(raised)

    assert type(failure) is kind
    assert (failure.is_safe_to_resend, failure.is_unanswered, failure.is_temporary) == (safe, unanswered, True)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (OutOfTime(), Outcome.TEMPORARY_PROBLEM),
        (OutOfTime(waiting_for_slots=True), Outcome.TEMPORARY_PROBLEM),
        (OutOfDescriptors(), Outcome.TEMPORARY_PROBLEM),
        (ConnectFailed("ConnectError"), Outcome.TEMPORARY_PROBLEM),
        (TimedOut("ReadTimeout"), Outcome.TEMPORARY_PROBLEM),
        (MalformedAnswer("no response.calendars list in the answer"), Outcome.TEMPORARY_PROBLEM),
        (UnreadableAnswer("AnswerTooLarge", "too large"), Outcome.TEMPORARY_PROBLEM),
        (NotReady(), Outcome.APP_NOT_READY),
        (NoRobotCode(), Outcome.DINGTALK_ERROR),
        (UnusableUrl(), Outcome.DINGTALK_ERROR),
        (Refused(503, "HTTP503"), Outcome.TEMPORARY_PROBLEM),
        (Refused(400, "invalidParameter", "calendar type invalid"), Outcome.NOT_SUBSCRIBABLE),
    ],
)
def test_each_kind_of_failure_has_its_card_whichever_call_failed(error: Failure, outcome: Outcome) -> None:
    calendar, lookup = explain_calendar_error(error, "cal-1"), explain_lookup_error(error)

    assert calendar.outcome == outcome
    assert lookup.outcome == (Outcome.DINGTALK_ERROR if outcome == Outcome.NOT_SUBSCRIBABLE else outcome)
    assert calendar.data["code"] == error.code  # what the card and the log name


def test_the_bots_own_conditions_name_no_request_of_dingtalk() -> None:
    assert explain_calendar_error(NotReady(), "cal-1").data["request_id"] == ""
    assert explain_calendar_error(Refused(400, "permissionDenied", "", "R1"), "cal-1").data["request_id"] == "R1"


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
