"""The calendar API: list, subscribe, unsubscribe, refused with the errors DingTalk documents."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from bot.sandbox.http import Route, error_response, json_response
from bot.sandbox.ids import acs_request_id
from bot.sandbox.state import PlatformState

NOT_IN_SCOPE = "The user is not within the subscription scope"


class CalendarApi(PlatformState):
    async def _api_calendars(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        union_id = unquote(segments[4])
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        denied = self._check_token(request) or self._check_user_token(token, union_id)
        if denied is not None:
            return denied
        denied = self._check_organization(request, union_id)
        if denied is not None:
            return denied
        entries = [_calendar_entry(self.primary[union_id], "我的日历", "primary")] if union_id in self.primary else []
        for calendar_id in sorted(self.subscriptions[union_id]):
            entries.append(_calendar_entry(calendar_id, self.calendars[calendar_id].summary, "subscribed"))
        return json_response(200, {"response": {"calendars": entries}})

    async def _api_unsubscribe(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return self._change_subscription(request, segments, subscribe=False)

    async def _api_subscribe(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return self._change_subscription(request, segments, subscribe=True)

    def _change_subscription(self, request: web.Request, segments: list[str], *, subscribe: bool) -> web.Response:
        union_id, calendar_id = unquote(segments[4]), unquote(segments[6])
        self.carry_out_late("subscribe" if subscribe else "unsubscribe")
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        denied = self._check_token(request) or self._check_user_token(token, union_id)
        if denied is not None:
            return denied
        denied = self._check_organization(request, union_id)
        if denied is not None:
            return denied
        if not calendar_id:
            return error_response(400, "invalidParameter", "calendarId cannot be blank")
        if calendar_id == self.primary.get(union_id):
            return error_response(400, "invalidParameter", "calendar type invalid")
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            return error_response(400, "invalidParameter", "forwardErrorMessage")
        if calendar.scope is not None and union_id not in calendar.scope:
            return error_response(400, "permissionDenied", NOT_IN_SCOPE)
        if self.strict_subscriptions and (calendar_id in self.subscriptions[union_id]) == subscribe:
            self.repeated_changes += 1
            return error_response(400, "invalidParameter", "forwardErrorMessage")
        if subscribe:
            self.subscriptions[union_id].add(calendar_id)
            return web.Response(status=200, headers={"x-acs-request-id": acs_request_id()})
        self.subscriptions[union_id].discard(calendar_id)
        return json_response(200, {"result": True})


def _calendar_entry(calendar_id: str, summary: str, kind: str) -> dict[str, str]:
    return {
        "id": calendar_id,
        "summary": summary,
        "description": "",
        "timeZone": "Asia/Shanghai",
        "eTag": "0",
        "type": kind,
        "privilege": "VIEW_DETAIL",
    }


ROUTES = (
    Route("GET", "/v1.0/calendar/users/{}/calendars", "calendars", CalendarApi._api_calendars),
    Route("POST", "/v1.0/calendar/users/{}/calendars/{}/unsubscribe", "unsubscribe", CalendarApi._api_unsubscribe),
    Route("POST", "/v1.0/calendar/users/{}/calendars/{}/subscribe", "subscribe", CalendarApi._api_subscribe),
)
