"""DingTalk's API as one message's handling sees it: the client bound to that message's Authorization."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from bot.auth.credentials import Authorization
from bot.dingtalk import answers
from bot.dingtalk.client import DingTalkClient, safe_to_resend
from bot.dingtalk.errors import UnusableUrl, request_id_of
from bot.dingtalk.recent_calendars import RecentCalendars
from bot.models import Calendar


class DingTalkApi:
    """User lookups and robot sends with the organization's credentials, calendar calls with the calendar's; the
    caller never sees which kind of token either is."""

    __slots__ = ("_calendar", "_client", "_lists", "_organization", "_scope")

    def __init__(
        self, client: DingTalkClient, authorization: Authorization, lists: RecentCalendars | None = None
    ) -> None:
        self._client = client
        self._organization = authorization.organization
        self._calendar = authorization.calendar
        self._scope = authorization.scope
        self._lists = lists if lists is not None else RecentCalendars(seconds=0)

    # Plain functions returning the client's awaitable, not coroutines of their own: every frame between a call and
    # its socket is resumed at each step of the call.

    def union_id(self, staff_id: str) -> Awaitable[str]:
        """The user's unionId from their staff userid (topapi/v2/user/get)."""
        body = {"userid": staff_id}
        return self._client.topapi(
            self._organization, "user/get", "/topapi/v2/user/get", body, answers.union_id, self._scope
        )

    def unsubscribe_calendar(self, union_id: str, calendar_id: str) -> Awaitable[str]:
        """Unsubscribe the user from a subscribed calendar; returns DingTalk's request id."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/unsubscribe"
        self._lists.drop(self._scope, union_id)  # whatever DingTalk answers: the change may have been made
        return self._client.openapi(
            self._calendar, "unsubscribe", "POST", path, None, answers.confirmed, scope=self._scope
        )

    async def subscribe_calendar(self, union_id: str, calendar_id: str) -> str:
        """Subscribe the user to a subscribed (public) calendar again; DingTalk answers 200 with no body."""
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars/{_segment(calendar_id)}/subscribe"
        self._lists.drop(self._scope, union_id)
        return request_id_of(
            await self._client.openapi(
                self._calendar, "subscribe", "POST", path, None, answers.as_is, scope=self._scope
            )
        )

    async def list_calendars(self, union_id: str, *, recent: bool = False) -> list[Calendar]:
        """All of the user's calendars (primary, subscribed, shared), as DingTalk lists them; with `recent`, as it
        listed them a few seconds ago if the bot changed none of them since (bot/dingtalk/recent_calendars.py)."""
        if recent:
            kept = self._lists.get(self._scope, union_id)
            if kept is not None:
                return kept
        stamp = self._lists.begin(self._scope, union_id)
        path = f"/v1.0/calendar/users/{_segment(union_id)}/calendars"
        calendars = await self._client.openapi(
            self._calendar, "calendars", "GET", path, None, answers.calendars, scope=self._scope
        )
        self._lists.put(self._scope, union_id, calendars, stamp)
        return calendars

    def post_session_webhook(self, url: str, body: dict[str, Any]) -> Awaitable[None]:
        """Reply through the message's sessionWebhook (the URL is its own credential)."""
        return self._client.post_session_webhook(url, body)

    async def send_to_user(self, staff_id: str, robot_code: str, msg_key: str, msg_param: dict[str, str]) -> None:
        """Send a robot message to one user through the OpenAPI (no expiry, unlike the sessionWebhook); raises when
        DingTalk answers that it did not deliver to them."""
        body = {"userIds": [staff_id], **self._client.robot_message(robot_code, msg_key, msg_param)}
        path = "/v1.0/robot/oToMessages/batchSend"
        read = answers.delivered_to(staff_id)
        await self._client.openapi(
            self._organization, "batchSend", "POST", path, body, read, retry_if=safe_to_resend, scope=self._scope
        )

    async def send_to_group(
        self, conversation_id: str, robot_code: str, msg_key: str, msg_param: dict[str, str]
    ) -> None:
        body = {"openConversationId": conversation_id, **self._client.robot_message(robot_code, msg_key, msg_param)}
        path = "/v1.0/robot/groupMessages/send"
        await self._client.openapi(
            self._organization,
            "groupSend",
            "POST",
            path,
            body,
            answers.sent,
            retry_if=safe_to_resend,
            scope=self._scope,
        )

    def create_and_deliver_card(self, body: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        """Create an interactive card and deliver it; DingTalk's answer as it is (bot/cards/interactive.py reads it)."""
        path = "/v1.0/card/instances/createAndDeliver"
        return self._client.openapi(
            self._organization, "cardDeliver", "POST", path, body, answers.as_is, safe_to_resend, self._scope
        )

    def update_card(self, body: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        """Update an interactive card in place (PUT /v1.0/card/instances)."""
        path = "/v1.0/card/instances"
        return self._client.openapi(
            self._organization, "cardUpdate", "PUT", path, body, answers.as_is, safe_to_resend, self._scope
        )


def _segment(value: str) -> str:
    """Exactly one URL path segment, whatever the value holds: '/', '?', '#', '%' are all percent-encoded. Letters and
    digits only (unionIds, most calendar ids) are their own encoding: handed back without quote()'s Python layers."""
    if value.isascii() and value.isalnum():
        return value
    if value in (".", ".."):  # dot segments: httpx removes them (".." with the segment before it), servers too
        raise UnusableUrl  # even as %2E: a server may normalise it so (the commands refuse such ids as typed)
    return quote(value, safe="")
