"""The one DingTalk HTTP client (httpx): each call paced, retried, and authorized by the credentials it is given."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import orjson

from bot.config import Config
from bot.dingtalk import answers, before_send, budget, http
from bot.dingtalk.credentials import Credentials
from bot.dingtalk.errors import (
    ConnectFailed,
    ConnectionLost,
    DingTalkError,
    MalformedAnswer,
    NoRobotCode,
    OutOfDescriptors,
    OutOfTime,
    ProxyFailed,
    TimedOut,
    TlsFailed,
    Unreachable,
    UnreadableAnswer,
    UnusableUrl,
    error_from,
    retry_delay,
)
from bot.stores import keys
from bot.stores.limiter import ApiLimiter

log = logging.getLogger("bot.dingtalk")
T = TypeVar("T")
_NO_WAIT = contextlib.nullcontext(0.0)
_JSON = {"content-type": "application/json", "accept": "application/json"}
_JSON_HEADERS = httpx.Headers(_JSON)  # built once: httpx.Request copies a Headers as it is, a dict it re-encodes
_TOKEN_HEADER = "x-acs-dingtalk-access-token"  # noqa: S105 - a header name
_TOKENS_KEPT = 256  # tokens whose request headers and URLs are kept built (one per organization or user in use)
# a retry is not started with less time than this left: it would end in a timeout that hides the real error
MIN_ATTEMPT_SECONDS = 0.25
DESCRIPTORS_WARNING_SECONDS = 10.0  # "no file descriptor left" is said at once, then at most this often
_REPLY_APIS = frozenset({"webhook", "batchSend", "groupSend", "cardDeliver", "cardUpdate"})
Retried = DingTalkError | OutOfDescriptors  # what a call's retries judge: every other condition ends the call at once
# what the transport's exceptions mean (bot/dingtalk/http.py raises only these; others are merely unreachable)
_EXCHANGE_FAILURES: tuple[tuple[type[Unreachable], type[httpx.HTTPError] | tuple[type[httpx.HTTPError], ...]], ...] = (
    (TlsFailed, http.TlsFailed),
    (ProxyFailed, http.ProxyUnreachable),
    (ConnectFailed, httpx.ConnectError),  # nothing was sent (the transport's connect timeout included)
    (TimedOut, (httpx.ReadTimeout, httpx.WriteTimeout)),
    (ConnectionLost, httpx.RemoteProtocolError),
)
# a path httpx would take as it is: segments of unreserved characters and percent escapes, none starting with a dot
# (httpx removes "." and ".." segments; such a path, and any other, goes through httpx's parser). Checked as one
# character class and two substring tests: an alternation per character cost 2.5 µs a path in the regex engine.
_PATH_CHARACTERS = re.compile(r"/[A-Za-z0-9\-._~%/]*")
_QUERY_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~%=&]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PLAIN_BASE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[A-Za-z0-9.\-:\[\]]+")


class DingTalkClient:
    """Calls DingTalk's OpenAPI (api host) and old API (oapi host) with the token of the credentials it is given;
    bot/auth/api.py binds it to one message's credentials."""

    def __init__(
        self,
        config: Config,
        transport: httpx.AsyncBaseTransport,
        limiter: ApiLimiter,
        robot_code: str | None = None,
    ) -> None:
        self._config = config
        self._robot_code = robot_code  # what a message that names no robot is answered as (the app type's policy)
        self._transport = transport
        self._limiter = limiter
        self.calls: Counter[str] = Counter()  # requests sent, by API: what `stats` shows an admin
        self._descriptors_warned_at = -math.inf

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- Stream gateway -------------------------------------------------------------------------------------

    async def open_stream_connection(self, subscriptions: list[dict[str, str]], user_agent: str) -> tuple[str, str]:
        """Ask the gateway for a WebSocket endpoint and a one-time ticket."""
        body = {
            "clientId": self._config.client_id,
            "clientSecret": self._config.client_secret,
            "subscriptions": subscriptions,
            "ua": user_agent,
            "localIp": "",
        }
        url = f"{self._config.api_base}/v1.0/gateway/connections/open"
        return await self._call("gateway", "POST", url, body, answers.stream_endpoint)

    # --- tokens (fetched, never kept: bot/credentials.py decides which and keeps them) ----------------------

    async def app_access_token(self) -> tuple[str, float]:
        """A new access token of the app itself (internal app), and its lifetime in seconds."""
        body = {"appKey": self._config.client_id, "appSecret": self._config.client_secret}
        url = f"{self._config.api_base}/v1.0/oauth2/accessToken"
        return await self._call("accessToken", "POST", url, body, answers.access_token)

    async def user_access_token(self, grant: dict[str, str]) -> dict[str, Any]:
        """A user's token from an authorization code or a refresh token (`grant`: code or refreshToken and
        grantType), with the OAuth client's credentials; DingTalk's answer as it is."""
        body = {"clientId": self._config.oauth_client_id, "clientSecret": self._config.oauth_client_secret, **grant}
        url = f"{self._config.api_base}/v1.0/oauth2/userAccessToken"
        return await self._call("userAccessToken", "POST", url, body, answers.as_is, attempts=2)

    async def own_union_id(self, user_token: str) -> str:
        """The unionId of the user a user token belongs to (contact/users/me)."""
        url = f"{self._config.api_base}/v1.0/contact/users/me"
        headers = token_headers(user_token)
        return await self._call("users/me", "GET", url, None, answers.own_union_id, headers, attempts=2)

    async def corp_access_token(self, corp_id: str, suite_ticket: str) -> tuple[str, float]:
        """A new access token of an organization that authorized this third-party (ISV) app, and its lifetime."""
        body = {
            "suiteKey": self._config.client_id,
            "suiteSecret": self._config.client_secret,
            "authCorpId": corp_id,
            "suiteTicket": suite_ticket,
        }
        url = f"{self._config.api_base}/v1.0/oauth2/corpAccessToken"
        return await self._call("corpAccessToken", "POST", url, body, answers.access_token)

    # --- replies that need no token -------------------------------------------------------------------------

    def post_session_webhook(self, url: str, body: dict[str, Any]) -> Awaitable[None]:
        """Reply through a message's sessionWebhook; the URL itself is the credential. Sent again, with backoff while
        the budget allows, only when DingTalk surely did not take it (no connection, a 5xx, a throttle): a post that
        got no answer may have been delivered. Any 2xx answer but an errcode refusal delivered it, whatever its body
        (the official SDK checks only the status: dingtalk-stream 0.24.3, ChatbotHandler.reply_markdown)."""
        return self._call(
            "webhook",
            "POST",
            request_url(url),
            body,
            answers.webhook_accepted,
            limited=False,  # not an OpenAPI call
            retry_if=safe_to_resend,
            any_body=True,
        )

    def robot_message(self, robot_code: str, msg_key: str, msg_param: dict[str, str]) -> dict[str, str]:
        robot_code = robot_code or self._robot_code or ""
        if not robot_code:  # an ISV robot's code is its own, never the suite key
            raise NoRobotCode
        return {
            # the message's own robot; the app key for an internal app's message that names none
            "robotCode": robot_code,
            "msgKey": msg_key,
            "msgParam": orjson.dumps(msg_param).decode(),
        }

    # --- transport ------------------------------------------------------------------------------------------

    def openapi(
        self,
        credentials: Credentials,
        api: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        read: Callable[[dict[str, Any]], T],
        retry_if: Callable[[Retried], bool] | None = None,
        scope: str = "",
    ) -> Awaitable[T]:
        """A new-style OpenAPI call (api host), its token in a header; `scope` names whose limits it counts against
        ("" for the app's own, an organization's id in an ISV app)."""
        url = request_url(f"{self._config.api_base}{path}")  # most paths name a user: a new URL per call
        # not a coroutine of its own: every frame between a call and its socket is resumed at each step of the call
        return credentials.authorized(
            lambda token: self._call(api, method, url, body, read, token_headers(token), retry_if=retry_if, scope=scope)
        )

    def topapi(
        self,
        credentials: Credentials,
        api: str,
        path: str,
        body: dict[str, Any],
        read: Callable[[dict[str, Any]], T],
        scope: str = "",
    ) -> Awaitable[T]:
        """An old-style API call (oapi host), its token in the query."""
        url = f"{self._config.oapi_base}{path}"
        return credentials.authorized(
            lambda token: self._call(api, "POST", token_url(url, token), body, read, scope=scope)
        )

    async def _call(
        self,
        api: str,
        method: str,
        url: str | httpx.URL,
        body: dict[str, Any] | None,
        read: Callable[[dict[str, Any]], T],
        headers: httpx.Headers = _JSON_HEADERS,
        *,
        limited: bool = True,
        attempts: int = 0,
        retry_if: Callable[[Retried], bool] | None = None,
        scope: str = "",
        any_body: bool = False,
    ) -> T:
        """One DingTalk call, its 2xx answer checked by `read`: paced by the per-API rate limiter and, inside a
        command, retried with backoff while `retry_if` says so (default: throttling, server errors, odd answers and
        timeouts) until the command's budget runs out or `attempts` (when set) were made. Other errors are final.
        An ISV app's calls are paced per organization (`scope`): DingTalk counts them per suite, organization, API.
        `any_body`: a 2xx answer that is not a JSON object is read as {} instead of being an odd answer."""
        spending = budget.current.get()
        attempt = 0
        unanswered = False  # an earlier try got no answer (it may have been carried out)
        while True:
            attempt += 1
            try:
                slot = self._limiter.slot(keys.api(scope, api)) if limited else _NO_WAIT
                async with spending.paced(slot) if spending and limited else slot:  # waits within the budget only
                    timeout = self._config.http_timeout
                    if spending is not None:
                        spending.attempts += 1
                        timeout = min(timeout, spending.remaining)
                    if timeout <= 0:
                        raise OutOfTime
                    self.calls[api] += 1
                    card_step = before_send.current.get() if api in _REPLY_APIS else None
                    if card_step is not None:  # as late as it can be: slot taken, the request is written next
                        await card_step.sending()
                    data = await self._request(method, url, body, headers, timeout, any_body)
                return read(data)
            except OutOfTime as error:  # the command's time ran out before a retry could be sent
                error.after_unanswered = unanswered
                raise
            except (DingTalkError, OutOfDescriptors) as error:
                error.after_unanswered = unanswered
                unanswered = unanswered or error.is_unanswered
                if api in _REPLY_APIS and error.is_safe_to_resend and (card_step := before_send.current.get()):
                    await card_step.not_sent()
                if isinstance(error, OutOfDescriptors):
                    self._out_of_descriptors(api)
                elif isinstance(error, MalformedAnswer):
                    fields = {"api": api, "status": error.status, "problem": error.message}
                    log.warning("unexpected answer from DingTalk", extra={"fields": fields})
                again = retry_if(error) if retry_if is not None else error.is_temporary
                delay = retry_delay(attempt, error.is_throttle) * self._config.retry_pause_scale
                if spending is None or not again or attempt == attempts:
                    raise
                if delay + MIN_ATTEMPT_SECONDS >= spending.remaining:
                    raise
                spending.retries += 1
                await asyncio.sleep(delay)

    def _out_of_descriptors(self, api: str) -> None:
        """Said at once, so that an admin sees why commands wait; then at most every DESCRIPTORS_WARNING_SECONDS."""
        now = time.monotonic()
        if now < self._descriptors_warned_at + DESCRIPTORS_WARNING_SECONDS:
            return
        self._descriptors_warned_at = now
        fields = {"api": api, "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
        log.warning(
            "too many open files: no connection can be opened until descriptors are freed; retrying",
            extra={"fields": fields},
        )

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        body: dict[str, Any] | None,
        headers: httpx.Headers,
        seconds: float,
        any_body: bool = False,
    ) -> dict[str, Any]:
        # httpx requests straight to the transport: the client's cookie, auth and redirect layers would cost more
        # CPU than the call itself, and no DingTalk API uses cookies; redirects are never followed. The request is
        # built from parts made once (URL, headers) and its body as a stream: httpx then adds no Host or length
        # header of its own (aiohttp writes both) and parses nothing again: 40 µs → 2 µs per request, and without
        # httpx.Request's own checks and copies (http.request: 17 → 8 k instructions).
        try:
            request = http.request(
                method,
                url if isinstance(url, httpx.URL) else httpx.URL(url),
                headers,
                orjson.dumps(body) if body is not None else b"",
                {"timeout": _timeout(seconds)},
            )
        except httpx.InvalidURL:  # never logged: a URL may be a credential (a sessionWebhook)
            raise UnusableUrl from None
        try:
            response = await self._transport.handle_async_request(request)
            # the transport (bot/http.py) hands the body whole and decoded: read as it is, without httpx's decoders
            stream = response.stream  # a ByteStream, both sync and async: read at once
            content = b"".join(stream) if isinstance(stream, httpx.SyncByteStream) else await response.aread()
        except httpx.HTTPError as error:
            raise exchange_failed(error) from None
        data = _json_object(content)
        if not 200 <= response.status_code < 300:  # response.is_success, without its two calls
            raise _echo_removed(error_from(response, data or {}), str(url), body, headers)
        if data is None:
            if any_body:
                return {}
            kind = response.headers.get("content-type", "no content type")[:60]
            problem = f"the answer is not a JSON object ({kind}, {len(content)} bytes)"
            raise MalformedAnswer(problem, status=response.status_code)
        if isinstance(data.get("code"), str) and data["code"]:  # an error in a 2xx answer is still an error
            raise _echo_removed(error_from(response, data), str(url), body, headers)
        if "requestid" not in data and (request_id := _acs_request_id(response)) is not None:
            data["requestid"] = request_id
        return data


@functools.lru_cache(maxsize=_TOKENS_KEPT)
def token_headers(token: str) -> httpx.Headers:
    """The headers of a new-style OpenAPI call made with this token, built once per token."""
    return httpx.Headers({**_JSON, _TOKEN_HEADER: token})


def request_url(url: str) -> httpx.URL | str:
    """`url` as httpx would parse it, without parsing it again (12 µs → 1 µs a call) when its path and query are
    plain (auth/api.py percent-encodes every value it puts in a path; a sessionWebhook's query is a session key):
    only its scheme and host, a few per process, go through httpx's parser. Any other URL is handed back as it is, a
    string that httpx's parser checks in full."""
    authority = url.find("://") + 3
    slash = url.find("/", authority)
    # a base of a scheme and a host (and port) only: no user or password is kept with a parsed base
    if authority < 3 or slash < 0 or not _PLAIN_BASE.fullmatch(url, 0, slash):
        return url
    path, question, query = url[slash:].partition("?")
    if not _PATH_CHARACTERS.fullmatch(path) or "/." in path or not _QUERY_CHARACTERS.fullmatch(query):
        return url
    if "%" in url and (_BAD_ESCAPE.search(path) or _BAD_ESCAPE.search(query)):
        return url
    # httpx's own parts of a URL (a NamedTuple; built as one, 0.3 µs, not with _replace, 0.8 µs); see the tests
    parts = _parsed_base(url[:slash])._uri_reference
    built = httpx.URL.__new__(httpx.URL)
    built._uri_reference = type(parts)(
        parts.scheme, parts.userinfo, parts.host, parts.port, path, query if question else None, parts.fragment
    )
    return built


@functools.lru_cache(maxsize=16)
def _parsed_base(base: str) -> httpx.URL:
    """A scheme and host (no path, no secret): the configured ones and the sessionWebhook's."""
    return httpx.URL(base)


@functools.lru_cache(maxsize=_TOKENS_KEPT)
def token_url(url: str, token: str) -> httpx.URL:
    """An old-style API URL with this token in its query, parsed once per token."""
    return httpx.URL(f"{url}?access_token={quote(token, safe='')}")


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> dict[str, float]:
    """The timeout extension, one per limit (most calls share one; see http._client_timeout); never changed."""
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


def exchange_failed(error: httpx.HTTPError) -> DingTalkError | OutOfDescriptors:
    """The transport's exception as the kind of failure it is; its type's name stays as the code (for logs)."""
    code = type(error).__name__
    if isinstance(error, http.TooManyOpenFiles):
        return OutOfDescriptors()
    if isinstance(error, httpx.DecodingError):  # an answer too large or undecodable: our own words, no secrets
        return UnreadableAnswer(code, str(error))
    for failure, kinds in _EXCHANGE_FAILURES:
        if isinstance(error, kinds):
            return failure(code)
    return Unreachable(code)


def safe_to_resend(error: Retried) -> bool:
    """Sending a message again is right only when the first surely did not arrive; else one copy too many."""
    return error.is_safe_to_resend


def _acs_request_id(response: httpx.Response) -> str | None:
    """The x-acs-request-id header (`in` and `[]` on httpx's headers each work out their encoding and lower every
    name: 3 µs a call; its raw pairs are a new list each time)."""
    value = http.header(response, b"x-acs-request-id")
    return value.decode("ascii", "replace") if value is not None else None  # letters, digits and dashes


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object: {} when empty (subscribe answers no body), None when it is anything else."""
    try:
        data = orjson.loads(content) if content else {}
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _echo_removed(error: DingTalkError, url: str, body: dict[str, Any] | None, headers: httpx.Headers) -> DingTalkError:
    """An error answer may echo the request (a proxy's page, a gateway's debug text): nothing the bot sent — the
    secret, a token or ticket, a webhook URL — goes on into a card or a log line through DingTalk's message."""
    sent = [url, *parse_qs(urlsplit(url).query).get("access_token", [])]
    sent += [value for value in (body or {}).values() if isinstance(value, str)]
    sent += [value for key, value in headers.items() if key not in _JSON]
    for value in sent:
        if len(value) >= 8:  # short values (a code, "true") are not secrets and would blank ordinary words
            error.message = error.message.replace(value, "[redacted]")
            error.code = error.code.replace(value, "[redacted]")
    return error
