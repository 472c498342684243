"""The one DingTalk client (httpx): access token, user lookup, calendar calls and replies, paced and retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from bot import answers, budget
from bot.config import Config
from bot.errors import MALFORMED, DingTalkError, error_from, malformed, request_id_of, retry_delay
from bot.models import Calendar
from bot.state import LocalState

log = logging.getLogger("bot.dingtalk")
T = TypeVar("T")
_NO_WAIT = contextlib.nullcontext(0.0)
_UNEXPECTED_ANSWERS = frozenset({MALFORMED, "AnswerTooLarge", "DecodingError"})  # logged with what was wrong
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
TOKEN_MARGIN_SECONDS = 300  # refresh this long before DingTalk says the token expires, as the SDK does
# however short a lifetime DingTalk announces (`expireIn: 0`), a token is reused this long: not one fetch per call
# (if DingTalk rejects it sooner, it is dropped and fetched again, as always)
TOKEN_MIN_REUSE_SECONDS = 60.0
# a retry is not started with less time than this left: it would end in a timeout that hides the real error
MIN_ATTEMPT_SECONDS = 0.25
WEBHOOK_ATTEMPTS = 2  # a webhook that answers 500 is tried once more; then the robot OpenAPI


class DingTalkClient:
    """Calls DingTalk's OpenAPI (api host) and old API (oapi host) with a cached app access token."""

    def __init__(self, config: Config, transport: httpx.AsyncBaseTransport, state: LocalState) -> None:
        self._config = config
        self._transport = transport
        self._state = state
        self.calls: Counter[str] = Counter()  # requests sent, by API: what `stats` shows an admin

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

    # --- access token ---------------------------------------------------------------------------------------

    async def access_token(self) -> str:
        """The app's token: cached (and shared between dynos), fetched by one caller at a time when missing."""
        token = await self._state.token()
        if token:
            return token
        async with self._state.refresh_lock():  # the others wait here, then reuse what it stored
            token = await self._state.token()
            if token:
                return token
            body = {"appKey": self._config.client_id, "appSecret": self._config.client_secret}
            url = f"{self._config.api_base}/v1.0/oauth2/accessToken"
            token, lifetime = await self._call("accessToken", "POST", url, body, answers.access_token)
            reuse = max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2, TOKEN_MIN_REUSE_SECONDS)
            await self._state.store_token(token, reuse)
            return token

    # --- API calls ------------------------------------------------------------------------------------------

    async def union_id(self, staff_id: str) -> str:
        """The user's unionId from their staff userid (topapi/v2/user/get)."""
        return await self._topapi("user/get", "/topapi/v2/user/get", {"userid": staff_id}, answers.union_id)

    async def unsubscribe_calendar(self, union_id: str, calendar_id: str) -> str:
        """Unsubscribe the user from a subscribed calendar; returns DingTalk's request id."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/unsubscribe"
        return await self._openapi("unsubscribe", "POST", path, None, answers.confirmed)

    async def subscribe_calendar(self, union_id: str, calendar_id: str) -> str:
        """Subscribe the user to a subscribed (public) calendar again; DingTalk answers 200 with no body."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/subscribe"
        return request_id_of(await self._openapi("subscribe", "POST", path, None, answers.as_is))

    async def list_calendars(self, union_id: str) -> list[Calendar]:
        """All of the user's calendars (primary, subscribed, shared), as DingTalk lists them."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars"
        return await self._openapi("calendars", "GET", path, None, answers.calendars)

    async def post_session_webhook(self, url: str, body: dict[str, Any]) -> None:
        """Reply through a message's sessionWebhook; the URL itself is the credential. Sent again only after an
        answered refusal, and once: a post that got no answer may have been delivered."""
        await self._call(
            "webhook",
            "POST",
            url,
            body,
            answers.webhook_accepted,
            limited=False,  # not an OpenAPI call
            attempts=WEBHOOK_ATTEMPTS,
            retry_if=_safe_to_resend,
        )

    async def send_to_user(self, staff_id: str, robot_code: str, msg_key: str, msg_param: dict[str, str]) -> None:
        """Send a robot message to one user through the OpenAPI (no expiry, unlike the sessionWebhook); raises when
        DingTalk answers that it did not deliver to them."""
        body = {"userIds": [staff_id], **self._robot_message(robot_code, msg_key, msg_param)}
        path = "/v1.0/robot/oToMessages/batchSend"
        await self._openapi("batchSend", "POST", path, body, answers.delivered_to(staff_id), retry_if=_safe_to_resend)

    async def send_to_group(
        self, conversation_id: str, robot_code: str, msg_key: str, msg_param: dict[str, str]
    ) -> None:
        body = {"openConversationId": conversation_id, **self._robot_message(robot_code, msg_key, msg_param)}
        path = "/v1.0/robot/groupMessages/send"
        await self._openapi("groupSend", "POST", path, body, answers.sent, retry_if=_safe_to_resend)

    def _robot_message(self, robot_code: str, msg_key: str, msg_param: dict[str, str]) -> dict[str, str]:
        return {
            # the message's own robot (an ISV robot's code is not the app key); the app key for an internal app
            "robotCode": robot_code or self._config.client_id,
            "msgKey": msg_key,
            "msgParam": orjson.dumps(msg_param).decode(),
        }

    # --- transport ------------------------------------------------------------------------------------------

    async def _openapi(
        self,
        api: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        read: Callable[[dict[str, Any]], T],
        retry_if: Callable[[DingTalkError], bool] | None = None,
    ) -> T:
        url = f"{self._config.api_base}{path}"
        return await self._authorized(
            lambda token: self._call(
                api, method, url, body, read, {"x-acs-dingtalk-access-token": token}, retry_if=retry_if
            )
        )

    async def _topapi(self, api: str, path: str, body: dict[str, Any], read: Callable[[dict[str, Any]], T]) -> T:
        url = f"{self._config.oapi_base}{path}?access_token="
        return await self._authorized(lambda token: self._call(api, "POST", url + quote(token, safe=""), body, read))

    async def _authorized(self, call: Callable[[str], Awaitable[T]]) -> T:
        """Make a call with the app's token; if DingTalk rejects the token, drop it and try once with a new one."""
        token = await self.access_token()
        try:
            return await call(token)
        except DingTalkError as error:
            if not error.is_token_rejected:
                raise
        await self._state.drop_token(token)
        return await call(await self.access_token())

    async def _call(
        self,
        api: str,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        read: Callable[[dict[str, Any]], T],
        headers: dict[str, str] | None = None,
        *,
        limited: bool = True,
        attempts: int = 0,
        retry_if: Callable[[DingTalkError], bool] | None = None,
    ) -> T:
        """One DingTalk call, its 2xx answer checked by `read`: paced by the per-API rate limiter and, inside a
        command, retried with backoff while `retry_if` says so (default: throttling, server errors, odd answers and
        timeouts) until the command's budget runs out or `attempts` (when set) were made. Other errors are final."""
        spending = budget.current.get()
        attempt = 0
        while True:
            attempt += 1
            try:
                slot = self._state.api_slot(api) if limited else _NO_WAIT
                async with spending.paced(slot) if spending and limited else slot:  # waits within the budget only
                    timeout = self._config.http_timeout
                    if spending is not None:
                        spending.attempts += 1
                        timeout = min(timeout, spending.remaining)
                    if timeout <= 0:
                        raise DingTalkError(0, "CommandTimeout", "the command ran out of time")
                    self.calls[api] += 1
                    data = await self._request(method, url, body, headers, timeout)
                return read(data)
            except DingTalkError as error:
                if error.code in _UNEXPECTED_ANSWERS:
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

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str] | None, seconds: float
    ) -> dict[str, Any]:
        # httpx requests straight to the transport: the client's cookie, auth and redirect layers would cost more
        # CPU than the call itself, and no DingTalk API uses cookies; redirects are never followed.
        try:
            request = httpx.Request(
                method,
                url,
                content=orjson.dumps(body) if body is not None else None,
                headers={**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS,
                extensions={"timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}},
            )
        except httpx.InvalidURL:  # never logged: a URL may be a credential (a sessionWebhook)
            raise DingTalkError(0, "InvalidURL", "the URL cannot be requested") from None
        try:
            response = await self._transport.handle_async_request(request)
            content = await response.aread()
        except httpx.DecodingError as error:  # an answer too large or undecodable: our own words, no secrets
            raise DingTalkError(0, type(error).__name__, str(error)) from None
        except httpx.HTTPError as error:
            raise DingTalkError(0, type(error).__name__, "DingTalk could not be reached") from None
        data = _json_object(content)
        if not response.is_success:
            raise error_from(response, data or {})
        if data is None:
            kind = response.headers.get("content-type", "no content type")[:60]
            problem = f"the answer is not a JSON object ({kind}, {len(content)} bytes)"
            raise malformed(problem, status=response.status_code)
        if isinstance(data.get("code"), str) and data["code"]:  # an error in a 2xx answer is still an error
            raise error_from(response, data)
        if "requestid" not in data and "x-acs-request-id" in response.headers:
            data["requestid"] = response.headers["x-acs-request-id"]
        return data


def _safe_to_resend(error: DingTalkError) -> bool:
    """Sending a message again is right only when the first surely did not arrive; else one copy too many."""
    return error.is_safe_to_resend


def _segment(value: str) -> str:
    """Exactly one URL path segment, whatever the value holds: '/', '?', '#', '%' are all percent-encoded."""
    return quote(value, safe="")


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object: {} when empty (subscribe answers no body), None when it is anything else."""
    try:
        data = orjson.loads(content) if content else {}
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
