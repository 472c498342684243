"""The sandbox's card platform: createAndDeliver, PUT update and the press callback frame, as dingtalk-cards.md says."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CARD_CALLBACK_TOPIC = "/v1.0/card/instances/callback"
ANSWER_SECONDS = 2.0  # a press's answer arriving later is ignored, as DingTalk times it out ([KB] CARD/0007)
VALUE_LIMIT = 1_024  # bytes of one cardParamMap value ([KB] API/0783; enforcement unverified, so strict here)
KEY_LIMIT = 100
TEMPLATE_ID = "sandbox-calendar-card.schema"
CARD_PERMISSION = "Card.Instance.Write"
_SPACE_TYPES = {"IM_GROUP": "imGroupOpenDeliverModel", "IM_ROBOT": "imRobotOpenDeliverModel"}


@dataclass
class CardInstance:
    """One card as DingTalk keeps it: its template, public data, each user's private data, where it went."""

    template_id: str
    public: dict[str, str]
    private: dict[str, dict[str, str]]
    space_type: str
    space_id: str
    robot_code: str
    callback_type: str
    versions: int = 1  # each applied update (PUT or a press's answer) adds one


@dataclass
class Press:
    """A press the sandbox pushed, and what became of its answer."""

    out_track_id: str
    user_id: str
    pushed_at: float
    answered_at: float | None = None
    answer: dict[str, Any] | None = None


@dataclass
class CardPlatform:
    """Seeded by tests and the demo: which templates exist (published or not), whether the app holds
    Card.Instance.Write, which spaces refuse delivery. Records every card and every violation of the documented rules
    (a PUT while a press on that card is unanswered, an answer after the 2 s window)."""

    check_token: Callable[[web.Request], web.Response | None]
    staff_ids: Callable[[], set[str]]
    robot_codes: Callable[[], set[str]]
    changed: Callable[[], Awaitable[None]]  # wakes whoever waits on the platform (Sandbox.wait_for)
    templates: dict[str, bool] = field(default_factory=lambda: {TEMPLATE_ID: True})  # id -> published
    permission: bool = True
    refused_spaces: set[str] = field(default_factory=set)  # spaceIds whose deliverResults[] say success: false
    instances: dict[str, CardInstance] = field(default_factory=dict)
    presses: dict[str, Press] = field(default_factory=dict)  # frame messageId -> the press
    put_during_callback: int = 0
    late_answers: int = 0

    def clear_faults(self) -> None:
        self.templates = {TEMPLATE_ID: True}
        self.permission = True
        self.refused_spaces = set()

    # --- what a user sees ---------------------------------------------------------------------------------------

    def seen_by(self, out_track_id: str, user_id: str) -> dict[str, str]:
        """The card's variables as this user's client shows them: public data, their private data over it."""
        card = self.instances[out_track_id]
        return {**card.public, **card.private.get(user_id, {})}

    def in_space(self, space_id: str) -> list[str]:
        """The outTrackIds of the cards delivered to this conversation (or 1:1 to this user), oldest first."""
        return [track for track, card in self.instances.items() if card.space_id == space_id]

    # --- presses into the bot -----------------------------------------------------------------------------------

    def press_frame(
        self,
        out_track_id: str,
        user_id: str,
        params: dict[str, str],
        *,
        corp_id: str,
        app_id: str,
        action_id: str = "row",
        message_id: str = "",
    ) -> tuple[str, str]:
        """The CALLBACK frame DingTalk pushes when `user_id` presses a `request` button; its messageId and text."""
        message_id = message_id or f"card_{uuid.uuid4().hex}"
        card = self.instances.get(out_track_id)
        content = {"cardPrivateData": {"actionIds": [action_id], "params": params}}
        data = {
            "type": "actionCallback",
            "outTrackId": out_track_id,
            "corpId": corp_id,
            "userId": user_id,
            "content": json.dumps(content, ensure_ascii=False),
            "spaceType": card.space_type if card else "IM_GROUP",
            "spaceId": card.space_id if card else "",
            "userIdType": 1,
            "extension": "{}",
        }
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {
                "appId": app_id,
                "contentType": "application/json",
                "messageId": message_id,
                "time": str(int(time.time() * 1000)),
                "topic": CARD_CALLBACK_TOPIC,
            },
            "data": json.dumps(data, ensure_ascii=False),
        }
        self.presses.setdefault(message_id, Press(out_track_id, user_id, time.monotonic()))
        return message_id, json.dumps(frame, ensure_ascii=False)

    def acked(self, ack: dict[str, Any]) -> None:
        """A press's ACK: its `{"response": …}` updates the card for the presser, if it came within the window."""
        message_id = str((ack.get("headers") or {}).get("messageId", ""))
        press = self.presses.get(message_id)
        if press is None or press.answered_at is not None:
            return
        press.answered_at = time.monotonic()
        try:
            answer = json.loads(ack.get("data") or "{}")
        except ValueError:
            answer = {}
        response = answer.get("response") if isinstance(answer, dict) else None
        press.answer = response if isinstance(response, dict) else {}
        if press.answered_at - press.pushed_at > ANSWER_SECONDS:
            self.late_answers += 1
            return
        card = self.instances.get(press.out_track_id)
        if card is None or not press.answer:
            return
        options = press.answer.get("cardUpdateOptions") or {}
        public = (press.answer.get("cardData") or {}).get("cardParamMap")
        private = (press.answer.get("userPrivateData") or {}).get("cardParamMap")
        if isinstance(public, dict):
            card.public = _merged(card.public, public, options.get("updateCardDataByKey"))
        if isinstance(private, dict):
            mine = card.private.get(press.user_id, {})
            card.private[press.user_id] = _merged(mine, private, options.get("updatePrivateDataByKey"))
        card.versions += 1

    def _unanswered_press_on(self, out_track_id: str) -> bool:
        now = time.monotonic()
        return any(
            press.out_track_id == out_track_id and press.answered_at is None and now - press.pushed_at < ANSWER_SECONDS
            for press in self.presses.values()
        )

    # --- the HTTP API -------------------------------------------------------------------------------------------

    async def create_and_deliver(self, request: web.Request, body: Any) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not body:
            return _param("param.empty")
        track = body.get("outTrackId")
        if not isinstance(track, str) or not track:
            return _param("param.outTrackIdEmpty")
        template = body.get("cardTemplateId")
        if not template:
            return _param("param.cardTemplateIdEmpty")
        if template not in self.templates:
            return _param("param.templateNotExist")
        if not self.templates[template]:
            return _param("param.templateUnpublished")
        if track in self.instances:
            return _param("param.cardAlreadyExist")
        space = body.get("openSpaceId")
        if not isinstance(space, str) or not space:
            return _param("param.openSpaceIdEmpty")
        space_type, _, space_id = space.removeprefix("dtv1.card//").partition(".")
        if not space.startswith("dtv1.card//") or space_type not in _SPACE_TYPES or not space_id:
            return _param("param.openSpaceIdInvalid")
        deliver = body.get(_SPACE_TYPES[space_type])
        if not isinstance(deliver, dict):
            return _param("param.openDeliverModelEmpty")
        robot_code = str(deliver.get("robotCode") or "")
        if (space_type == "IM_GROUP" or robot_code) and robot_code not in self.robot_codes():
            return _param("param.openDeliverModelError")
        public = (body.get("cardData") or {}).get("cardParamMap")
        if not isinstance(public, dict) or not public:
            return _param("param.cardPublicDataEmpty")
        private = _private(body)
        problem = _values_problem(public) or next(filter(None, map(_values_problem, private.values())), None)
        if problem:
            return _param(problem)
        known = self.staff_ids()
        if any(user not in known for user in private) or (space_type == "IM_ROBOT" and space_id not in known):
            return _param("param.userIdNotExist")
        callback = str(body.get("callbackType") or "")
        self.instances[track] = CardInstance(template, public, private, space_type, space_id, robot_code, callback)
        success = space_id not in self.refused_spaces
        result = {
            "spaceType": space_type,
            "spaceId": space_id,
            "success": success,
            "carrierId": uuid.uuid4().hex if success else "",
            "errorMsg": "" if success else "deliver failed",
        }
        if not success:
            del self.instances[track]
        await self.changed()
        return _answer(200, {"success": True, "result": {"outTrackId": track, "deliverResults": [result]}})

    async def update(self, request: web.Request, body: Any) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        track = body.get("outTrackId") if isinstance(body, dict) else None
        if not isinstance(track, str) or not track:
            return _param("param.outTrackIdEmpty")
        card = self.instances.get(track)
        if card is None:
            return _param("param.cardNotExist")
        public = (body.get("cardData") or {}).get("cardParamMap")
        private = _private(body)
        if not public and not private:
            return _param("param.cardDataAndPrivateDataBothEmpty")
        if self._unanswered_press_on(track):  # "请勿在回调过程中，调用更新接口" ([KB] CARD/0007)
            self.put_during_callback += 1
        problem = _values_problem(public or {}) or next(filter(None, map(_values_problem, private.values())), None)
        if problem:
            return _param(problem)
        if any(user not in self.staff_ids() for user in private):
            return _param("param.userIdNotExist")
        options = body.get("cardUpdateOptions") or {}
        if public:
            card.public = _merged(card.public, public, options.get("updateCardDataByKey"))
        for user, values in private.items():
            card.private[user] = _merged(card.private.get(user, {}), values, options.get("updatePrivateDataByKey"))
        card.versions += 1
        await self.changed()
        return _answer(200, {"success": True, "result": True})

    def _refused(self, request: web.Request) -> web.Response | None:
        denied = self.check_token(request)
        if denied is not None:
            return denied
        if not self.permission:
            body = {
                "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                "message": "没有调用该接口的权限，接口权限申请参考：https://open.dingtalk.com/document/orgapp/add-api-permission",
                "requestid": str(uuid.uuid4()).upper(),
                "accessdenieddetail": {"requiredScopes": [CARD_PERMISSION]},
            }
            return _answer(403, body)
        return None


def _private(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {user: (data or {}).get("cardParamMap") or {} for user, data in (body.get("privateData") or {}).items()}


def _merged(old: dict[str, str], new: dict[str, Any], by_key: Any) -> dict[str, str]:
    """By key merges; without the option the whole map is replaced ([KB] API/0782)."""
    return {**old, **new} if by_key is True else dict(new)


def _values_problem(values: dict[str, Any]) -> str | None:
    """Types must match the template's (strings on the wire) and sizes stay within the documented limits."""
    for key, value in values.items():
        if not isinstance(value, str) or len(key.encode()) > KEY_LIMIT or len(value.encode()) > VALUE_LIMIT:
            return "param.invalid"
    return None


def _param(code: str) -> web.Response:
    return _answer(400, {"code": code, "message": code, "requestid": str(uuid.uuid4()).upper()})


def _answer(status: int, body: Any) -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))
    response.headers["x-acs-request-id"] = str(uuid.uuid4()).upper()
    return response


CardRoute = Callable[[web.Request, Any], Awaitable[web.Response]]
