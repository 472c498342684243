"""The robot's replies: a message's sessionWebhook, and the robot OpenAPI's batchSend and group send."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from bot.sandbox.faults import UNDELIVERED_LISTS
from bot.sandbox.http import RECORDED, Route, error_response, json_response
from bot.sandbox.state import PlatformState

BUTTON_LIST_LIMIT = 1_000  # characters of an actionCard's btn_json_list DingTalk accepts (errcode 34016)
REPLY_APIS = frozenset({"webhook", "batchSend", "groupSend"})


class RobotApi(PlatformState):
    async def _api_webhook(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        # An actionCard's buttons travel as btn_json_list, at most 1,000 characters: errcode 34016 beyond
        # ([KB] 0013 server-api-error-codes, 34016 "参数长度超过限制" next to single_title 20 / single_url 500).
        buttons = (body.get("actionCard") or {}).get("btns") if isinstance(body, dict) else None
        if buttons and len(json.dumps(buttons, ensure_ascii=False, separators=(",", ":"))) > BUTTON_LIST_LIMIT:
            return json_response(200, {"errcode": 34016, "errmsg": "btn_json_list长度超过限制"})
        if self.webhook_without_errcode:
            # The response body of a sessionWebhook post is not documented (reference §6.1); the official Python SDK
            # checks only the HTTP status (dingtalk-stream 0.24.3, ChatbotHandler.reply_markdown: raise_for_status).
            return web.Response(status=200)
        return json_response(200, {"errcode": 0, "errmsg": "ok"})

    async def _api_batchSend(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        denied = self._check_token(request) or self._check_robot_code(body)
        if denied is not None:
            return denied
        answer: dict[str, Any] = {
            "processQueryKey": uuid.uuid4().hex,
            "invalidStaffIdList": [],
            "flowControlledStaffIdList": [],  # filteredStaffIdList only in the SDK's model: sent when not empty
        }
        for staff_id in body.get("userIds") or []:
            refused = self._receivers_refused.get(str(staff_id))
            if refused:
                answer.setdefault(refused.popleft(), []).append(staff_id)
        if any(answer.get(name) for name in UNDELIVERED_LISTS):
            self.undelivered.append(request[RECORDED])
        return json_response(200, answer)

    async def _api_groupSend(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        denied = self._check_token(request) or self._check_robot_code(body)
        return denied or json_response(200, {"processQueryKey": uuid.uuid4().hex})

    def _check_robot_code(self, body: Any) -> web.Response | None:
        """DingTalk sends only as a robot the token's app owns; for an ISV app that is the robot's own code."""
        if body.get("robotCode") not in (self.robot_codes or {self.client_id}):
            return error_response(400, "invalidParameter.robotCode.auth", "robotCode 不合法")
        return None


ROUTES = (
    Route("POST", "/robot/sendBySession", "webhook", RobotApi._api_webhook),
    Route("POST", "/v1.0/robot/oToMessages/batchSend", "batchSend", RobotApi._api_batchSend),
    Route("POST", "/v1.0/robot/groupMessages/send", "groupSend", RobotApi._api_groupSend),
)
