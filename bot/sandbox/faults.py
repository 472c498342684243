"""Injected failures: calls answered otherwise, never or late, receivers refused, the QPS limit; clear_faults()."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from bot.sandbox.answers import json_answer
from bot.sandbox.http import Responder, error_response, json_response
from bot.sandbox.state import PlatformState

UNDELIVERED_LISTS = ("invalidStaffIdList", "flowControlledStaffIdList", "filteredStaffIdList")


class Faults(PlatformState):
    """The fault knobs of the sandbox (its latency, QPS limit and connection knobs are fields of its state)."""

    def fail_next(
        self, api: str, status: int, body: Any, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """The next `times` calls of `api` get this answer instead of the normal one."""
        self.answer_next(api, json_answer(status, body, headers), times)

    def answer_next(self, api: str, responder: Responder, times: int = 1) -> None:
        """The next `times` calls of `api` are answered by `responder` (see bot/sandbox/answers.py)."""
        self._faults[api].extend([responder] * times)

    def finish_late(self, api: str) -> None:
        """The next call of `api` ("unsubscribe" or "subscribe") is never answered, and DingTalk carries it out only
        when the following call of the same API arrives: still working on the first try when the client died, done
        by the time its second try is read."""
        self.answer_next(api, self._carried_out_later(api))

    def never_answer(self, api: str, times: int = 1) -> None:
        """The next `times` calls of `api` are received and carried out but never answered: a reply counts as
        delivered. DingTalk documents no undo of a message it took; like any HTTP server that has done the work, it
        cannot take it back when its answer does not reach the client (a timeout, a dropped connection)."""

        async def respond(request: web.Request) -> web.StreamResponse:
            await self._closing.wait()  # the client gives up or dies first
            return json_response(200, {"errcode": 0, "errmsg": "ok"})

        self.answer_next(api, respond, times)

    def _carried_out_later(self, api: str) -> Responder:
        async def respond(request: web.Request) -> web.StreamResponse:
            segments = request.raw_path.partition("?")[0].split("/")
            self._late[api].append((unquote(segments[4]), unquote(segments[6])))
            await self._closing.wait()  # the client gives up or dies first
            return error_response(500, "ServiceUnavailable", "gone")

        return respond

    def refuse_receiver(self, staff_id: str, listed_in: str, times: int = 1) -> None:
        """The next `times` batchSends to this user answer 200 with them in `listed_in` (one of UNDELIVERED_LISTS),
        and do not deliver, as DingTalk does."""
        assert listed_in in UNDELIVERED_LISTS
        self._receivers_refused[staff_id].extend([listed_in] * times)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._receivers_refused.clear()
        self.latency = 0.0
        self.api_latency = {}
        self.qps_limit = 0
        self.silent_connections = 0
        self.robot_codes = set()
        self.token_lifetime = 7200
        self.disconnect_close_seconds = 10.0
        self.strict_subscriptions = False
        self.webhook_without_errcode = False
        self.close_connections = False
        self._late.clear()
        self.cards.clear_faults()
        self.handshake_delay = 0.0
        self.connect_fault = ""
        self.user_scopes_missing = set()

    def _over_qps_limit(self, api: str, now: float) -> bool:
        """A sliding one-second window per API on arrival times, as strict as DingTalk's per-app limit."""
        if not self.qps_limit:
            return False
        calls = self._recent_calls[api]
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        calls.append(now)
        return len(calls) > self.qps_limit
