"""What every sandbox route shares: the recorded request, the route, DingTalk's JSON and error answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from bot.sandbox.ids import acs_request_id

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A route's handler: the sandbox, the request, the raw path's segments, the JSON body (an object, or {})
Handler = Callable[[Any, web.Request, list[str], Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Recorded:
    """One request as the sandbox received it, raw path included."""

    api: str
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = 0.0  # time.monotonic() on arrival

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.raw_path.partition("?")[2]).items()}

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


RECORDED = web.RequestKey("recorded", Recorded)


@dataclass(frozen=True)
class Route:
    """One API: its method and raw path, where `{}` stands for exactly one segment (a calendar id stays one segment
    only if the bot encoded it), the name requests are recorded under, and the handler that answers."""

    method: str
    path: str
    api: str
    handler: Handler

    def matches(self, method: str, segments: list[str]) -> bool:
        pattern = self.path.split("/")
        if method != self.method or len(pattern) != len(segments):
            return False
        return all(expected in ("{}", actual) for expected, actual in zip(pattern, segments, strict=True))


def json_response(status: int, body: Any, request_id: str = "") -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))
    response.headers["x-acs-request-id"] = request_id or acs_request_id()
    return response


def error_response(status: int, code: str, message: str) -> web.Response:
    request_id = acs_request_id()
    return json_response(status, {"code": code, "message": message, "requestid": request_id}, request_id)


def json_object(body: bytes) -> Any:
    """The body as a JSON object, or {} when it is empty, not JSON or not an object."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
