"""DingTalk's 2xx answers read against their documented shapes: each reader returns the value or raises."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bot.dingtalk.errors import FLOW_CONTROLLED, MalformedAnswer, Refused, raise_for_errcode, request_id_of
from bot.models import Calendar

# batchSend answers 200 even when it did not deliver: a receiver in one of these lists did not get the message
UNDELIVERED_LISTS = ("invalidStaffIdList", FLOW_CONTROLLED, "filteredStaffIdList")


def as_is(data: dict[str, Any]) -> dict[str, Any]:
    return data


def stream_endpoint(data: dict[str, Any]) -> tuple[str, str]:
    """The gateway's WebSocket endpoint and one-time ticket."""
    endpoint, ticket = data.get("endpoint"), data.get("ticket")
    if not (isinstance(endpoint, str) and endpoint and isinstance(ticket, str) and ticket):
        raise MalformedAnswer("no endpoint or ticket in the gateway's answer")
    return endpoint, ticket


def access_token(data: dict[str, Any]) -> tuple[str, float]:
    """The app token and its lifetime in seconds (7200 when DingTalk does not say; 0 when it says nonsense)."""
    token = data.get("accessToken")
    if not isinstance(token, str) or not token:
        raise MalformedAnswer("no accessToken in the answer")
    lifetime = data.get("expireIn", 7200)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not math.isfinite(lifetime):
        return token, 0.0
    return token, float(lifetime)


def own_union_id(data: dict[str, Any]) -> str:
    """contact/users/me: `unionId`."""
    union_id = data.get("unionId")
    if not isinstance(union_id, str) or not union_id:
        raise MalformedAnswer("no unionId in the answer")
    return union_id


def union_id(data: dict[str, Any]) -> str:
    """topapi/v2/user/get: `result.unionid`."""
    raise_for_errcode(data)
    result = data.get("result")
    found = result.get("unionid") if isinstance(result, dict) else None
    if not isinstance(found, str) or not found:
        raise MalformedAnswer("no result.unionid in the answer", request_id_of(data))
    return found


def calendars(data: dict[str, Any]) -> list[Calendar]:
    """The calendar list: `response.calendars`, each entry with a string id (entries without one are skipped)."""
    response = data.get("response")
    entries = response.get("calendars") if isinstance(response, dict) else None
    if not isinstance(entries, list):
        raise MalformedAnswer("no response.calendars list in the answer", request_id_of(data))
    return [
        Calendar(entry["id"], _text(entry.get("summary")), _text(entry.get("type")) or "unknown")
        for entry in entries
        if isinstance(entry, dict) and _text(entry.get("id"))
    ]


def _text(value: Any) -> str:
    """A field documented as a string; anything else (a number, or an object nested however deep) is absent."""
    return value if isinstance(value, str) else ""


def confirmed(data: dict[str, Any]) -> str:
    """The unsubscribe answer must confirm the change (`result: true`); returns its request id."""
    if data.get("result") is not True:
        raise Refused(200, "resultFalse", "DingTalk did not confirm the change", request_id_of(data))
    return request_id_of(data)


def webhook_accepted(data: dict[str, Any]) -> None:
    """A 2xx answer without `errcode` delivered the card: the answer's body is not documented (reference §6.1) and
    the official SDK checks only the HTTP status (dingtalk-stream's reply_markdown). An errcode other than 0 is still
    a refusal."""
    if "errcode" in data:
        raise_for_errcode(data)


def delivered_to(staff_id: str) -> Callable[[dict[str, Any]], None]:
    """A batchSend reader that raises when the answer lists the receiver as not delivered to; its code names the
    list (flow control is a throttle and passes, the other lists do not)."""

    def read(data: dict[str, Any]) -> None:
        if "processQueryKey" not in data:
            raise MalformedAnswer("no processQueryKey in the answer", request_id_of(data))
        for name in UNDELIVERED_LISTS:
            listed = data.get(name)
            if isinstance(listed, list) and staff_id in listed:
                raise Refused(200, name, "DingTalk did not deliver the message", request_id_of(data))

    return read


def sent(data: dict[str, Any]) -> None:
    """The group send: accepted when it answers a processQueryKey."""
    if "processQueryKey" not in data:
        raise MalformedAnswer("no processQueryKey in the answer", request_id_of(data))
