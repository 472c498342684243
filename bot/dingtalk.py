"""The one DingTalk client (httpx): access token, user lookup, calendar calls and replies, paced and retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from bot import budget
from bot.config import Config
from bot.errors import DingTalkError, error_from, raise_for_errcode, request_id_of, retry_delay
from bot.models import Calendar
from bot.state import LocalState

_NO_WAIT = contextlib.nullcontext(0.0)
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
TOKEN_MARGIN_SECONDS = 300  # refresh this long before DingTalk says the token expires, as the SDK does


class DingTalkClient:
    """Calls DingTalk's OpenAPI (api host) and old API (oapi host) with a cached app access token."""

    def __init__(self, config: Config, transport: httpx.AsyncBaseTransport, state: LocalState) -> None:
        self._config = config
        self._transport = transport
        self._state = state

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
        data = await self._call("gateway", "POST", f"{self._config.api_base}/v1.0/gateway/connections/open", body)
        return str(data["endpoint"]), str(data["ticket"])

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
            data = await self._call("accessToken", "POST", f"{self._config.api_base}/v1.0/oauth2/accessToken", body)
            lifetime = float(data.get("expireIn", 7200))
            token = str(data["accessToken"])
            await self._state.store_token(token, max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2))
            return token

    # --- API calls ------------------------------------------------------------------------------------------

    async def union_id(self, staff_id: str) -> str:
        """The user's unionId from their staff userid (topapi/v2/user/get)."""
        data = await self._topapi("user/get", "/topapi/v2/user/get", {"userid": staff_id})
        return str(data["result"]["unionid"])

    async def unsubscribe_calendar(self, union_id: str, calendar_id: str) -> str:
        """Unsubscribe the user from a subscribed calendar; returns DingTalk's request id."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/unsubscribe"
        data = await self._openapi("unsubscribe", "POST", path)
        if data.get("result") is not True:
            raise DingTalkError(200, "resultFalse", "DingTalk did not confirm the change", request_id_of(data))
        return request_id_of(data)

    async def subscribe_calendar(self, union_id: str, calendar_id: str) -> str:
        """Subscribe the user to a subscribed (public) calendar again; DingTalk answers 200 with no body."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/subscribe"
        return request_id_of(await self._openapi("subscribe", "POST", path))

    async def list_calendars(self, union_id: str) -> list[Calendar]:
        """All of the user's calendars (primary, subscribed, shared), as DingTalk lists them."""
        data = await self._openapi("calendars", "GET", f"/v1.0/calendar/users/{_segment(union_id)}/calendars")
        response = data.get("response")
        entries = response.get("calendars") if isinstance(response, dict) else None
        return [
            Calendar(str(entry.get("id", "")), str(entry.get("summary") or ""), str(entry.get("type") or "unknown"))
            for entry in entries or []
            if isinstance(entry, dict) and entry.get("id")
        ]

    async def post_session_webhook(self, url: str, body: dict[str, Any]) -> None:
        """Reply through a message's sessionWebhook; the URL itself is the credential."""
        data = await self._call("webhook", "POST", url, body, limited=False)  # not an OpenAPI call
        if data.get("errcode", 0) != 0:
            raise DingTalkError(200, str(data.get("errcode")), str(data.get("errmsg", "")))

    async def send_to_user(self, staff_id: str, msg_key: str, msg_param: dict[str, str]) -> None:
        """Send a robot message to one user through the OpenAPI (no expiry, unlike the sessionWebhook)."""
        body = {"userIds": [staff_id], **self._robot_message(msg_key, msg_param)}
        await self._openapi("batchSend", "POST", "/v1.0/robot/oToMessages/batchSend", body)

    async def send_to_group(self, conversation_id: str, msg_key: str, msg_param: dict[str, str]) -> None:
        body = {"openConversationId": conversation_id, **self._robot_message(msg_key, msg_param)}
        await self._openapi("groupSend", "POST", "/v1.0/robot/groupMessages/send", body)

    def _robot_message(self, msg_key: str, msg_param: dict[str, str]) -> dict[str, str]:
        return {
            "robotCode": self._config.client_id,
            "msgKey": msg_key,
            "msgParam": orjson.dumps(msg_param).decode(),
        }

    # --- transport ------------------------------------------------------------------------------------------

    async def _openapi(self, api: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self._config.api_base}{path}"
        return await self._authorized(
            lambda token: self._call(api, method, url, body, {"x-acs-dingtalk-access-token": token})
        )

    async def _topapi(self, api: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._config.oapi_base}{path}?access_token="
        return await self._authorized(
            lambda token: self._call(api, "POST", url + quote(token, safe=""), body, check_errcode=True)
        )

    async def _authorized(self, call: Callable[[str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
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
        headers: dict[str, str] | None = None,
        *,
        limited: bool = True,
        check_errcode: bool = False,
    ) -> dict[str, Any]:
        """One DingTalk call: paced by the per-API rate limiter and, inside a command, retried with backoff on
        throttling, server errors and timeouts until the command's budget runs out. Other errors are final."""
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
                    data = await self._request(method, url, body, headers, timeout)
                if check_errcode:
                    raise_for_errcode(data)
                return data
            except DingTalkError as error:
                delay = retry_delay(attempt, error.is_throttle)
                if spending is None or not error.is_temporary or delay >= spending.remaining:
                    raise
                spending.retries += 1
                await asyncio.sleep(delay)

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str] | None, seconds: float
    ) -> dict[str, Any]:
        # httpx requests straight to the transport: the client's cookie, auth and redirect layers would cost more
        # CPU than the call itself, and no DingTalk API uses cookies; redirects are never followed.
        request = httpx.Request(
            method,
            url,
            content=orjson.dumps(body) if body is not None else None,
            headers={**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS,
            extensions={"timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}},
        )
        try:
            response = await self._transport.handle_async_request(request)
            content = await response.aread()
        except httpx.HTTPError as error:
            raise DingTalkError(0, type(error).__name__, "DingTalk could not be reached") from None
        data = _json_object(content)
        if response.is_success:
            if "requestid" not in data and "x-acs-request-id" in response.headers:
                data["requestid"] = response.headers["x-acs-request-id"]
            return data
        raise error_from(response, data)


def _segment(value: str) -> str:
    """Exactly one URL path segment, whatever the value holds: '/', '?', '#', '%' are all percent-encoded."""
    return quote(value, safe="")


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(content) if content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
