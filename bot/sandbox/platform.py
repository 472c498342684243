"""A loopback DingTalk platform: Stream gateway and WebSocket, token, topapi, calendar, replies; records all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import os
import random
import time
import uuid
import zlib
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from aiohttp import WSMsgType, web

from bot.sandbox.cards import CardPlatform, CardRoute

CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"
TICKET_SECONDS = 90
NOT_IN_SCOPE = "The user is not within the subscription scope"
_REPLY_APIS = frozenset({"webhook", "batchSend", "groupSend"})
UNDELIVERED_LISTS = ("invalidStaffIdList", "flowControlledStaffIdList", "filteredStaffIdList")
Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


def staff_id_of(number: int) -> str:
    """The `number`th staff id, as long as DingTalk's generated userids (16 digits; "0147xxxx8602" masked in the
    receive-message doc, [KB] 0718): caches keyed by staff id then hold what they hold in production."""
    return f"0147{number:08d}8602"


def union_id_of(number: int) -> str:
    """The `number`th unionId, shaped like DingTalk's (26 characters, e.g. "z21HjQliSzpw0YWCOCHPQAiEiE" in the
    topapi/v2/user/get doc, [KB] 0056)."""
    return _opaque(f"union{number}", 22) + "iEiE"


def _opaque(seed: str, length: int) -> str:
    """`length` base64 characters derived from seed: DingTalk's ids are opaque base64-looking strings."""
    digest = hashlib.blake2b(seed.encode(), digest_size=48).digest()
    return base64.b64encode(digest).decode()[:length]


def _base64_id(prefix: str, size: int = 16) -> str:
    """A random id like DingTalk's msgId ("msgrK2xxxxU+riw==") or conversationId ("cid6EUxxxxsg=="): a prefix and
    `size` random bytes in base64, padding included ([KB] 0718's examples)."""
    return prefix + base64.b64encode(uuid.uuid4().bytes + os.urandom(size - 16)).decode()


def _frame_message_id() -> str:
    """A Stream frame's messageId as DingTalk writes it ("212ca9d7_974_1898c159aa6_1783b", [PEDIA] protocol.md)."""
    return f"{uuid.uuid4().hex[:8]}_{random.randrange(4096):x}_{int(time.time() * 1000):x}_{uuid.uuid4().hex[:5]}"  # noqa: S311


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


_RECORDED = web.RequestKey("recorded", Recorded)


@dataclass
class PublicCalendar:
    summary: str
    scope: set[str] | None = None  # unionIds allowed to subscribe; None means everyone


BUTTON_LIST_LIMIT = 1_000  # characters of an actionCard's btn_json_list DingTalk accepts (errcode 34016)


@dataclass
class Sandbox:
    """The fake platform. Tests and the demo seed it, push messages into it and read what the bot sent."""

    client_id: str = field(default_factory=lambda: f"sandbox-{uuid.uuid4().hex[:8]}")
    client_secret: str = "sandbox-client-secret"  # noqa: S105 - a loopback fake's credential
    corp_id: str = "dingsandbox0c3ac0f26a2123a5135c2f46"  # 36 characters, as "ding" and 32 hex digits are
    latency: float = 0.0  # seconds added to every answer, replies included; not to opening a connection
    qps_limit: int = 0  # when set, more calls of one API than this in any second are refused, as DingTalk does
    silent_connections: int = 0  # the next this many WebSockets neither answer pings nor send anything
    disconnect_close_seconds: float = 10.0  # after a `disconnect` frame, the socket is closed this much later
    handshake_delay: float = 0.0  # seconds the WebSocket handshake is held before it is answered
    connect_fault: str = ""  # on every new WebSocket: "disconnect" at once, "drop" it, or send an "oversized" frame
    requests: list[Recorded] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # staffId -> unionId
    primary: dict[str, str] = field(default_factory=dict)  # unionId -> primary calendar id
    calendars: dict[str, PublicCalendar] = field(default_factory=dict)
    subscriptions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    robot_codes: set[str] = field(default_factory=set)  # robotCodes the robot API accepts; empty: the client id
    token_lifetime: int = 7200  # the expireIn the token endpoint announces
    # a third-party enterprise (ISV) app: the client id and secret are its SuiteKey and SuiteSecret
    authorized_corps: set[str] = field(default_factory=set)  # organizations that authorized the app
    org_users: dict[tuple[str, str], str] = field(default_factory=dict)  # (corpId, staffId) -> unionId
    api_latency: dict[str, float] = field(default_factory=dict)  # per API, instead of `latency`
    # Unsubscribing from a calendar the user does not follow, or subscribing to one they do, is refused with the
    # generic documented error (400 invalidParameter, §1.1): whether DingTalk's calls are idempotent is not
    # documented (reference §9.1), so tests of a repeated change assume the stricter answer.
    strict_subscriptions: bool = False
    webhook_without_errcode: bool = False  # the sessionWebhook answers 200 with an empty body (see _api_webhook)
    # every HTTP answer says `Connection: close` (as an HTTP/1.1 server or proxy may, RFC 9112 §9.6): each call of
    # the bot then needs a connection, and so a file descriptor, of its own
    close_connections: bool = False

    def __post_init__(self) -> None:
        self._valid_tokens: set[str] = set()
        self.issued_secrets: list[str] = []  # every token and ticket handed out, for "never logged" checks
        self.webhook_replies: dict[str, Recorded] = {}  # raw path -> the reply posted to that sessionWebhook
        self._tickets: dict[str, float] = {}
        self._faults: dict[str, deque[Responder]] = defaultdict(deque)
        self._receivers_refused: dict[str, deque[str]] = defaultdict(deque)  # staffId -> batchSend lists to answer
        self._late: dict[str, list[tuple[str, str]]] = defaultdict(list)  # api -> changes carried out on its next call
        self.undelivered: list[Recorded] = []  # replies refused, or answered 200 with their receiver listed
        self._answering: set[asyncio.Task[Any]] = set()
        self._recent_calls: dict[str, deque[float]] = defaultdict(deque)
        self.throttled = 0  # calls refused by qps_limit
        self.repeated_changes = 0  # with strict_subscriptions: changes asked for that were already made
        self.concurrent = 0
        self.max_concurrent = 0  # the most API calls the bot had open at once
        self._sockets: list[web.WebSocketResponse] = []
        self._silent: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        self._pushed_at: dict[str, int] = {}  # msgId -> how many requests had arrived when it was pushed
        self._runner: web.AppRunner | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self.connect_attempts = 0  # WebSocket handshakes begun, including refused and abandoned ones
        self.connected_at: list[float] = []  # time.monotonic() of every WebSocket the sandbox accepted
        self.base_url = ""
        self.signed_in = ""  # unionId of whoever the browser is signed in as on the OAuth authorize page
        self.withdrawn: set[str] = set()  # unionIds who withdrew their consent to the app
        # permissions users' tokens are not granted: their calendar calls answer 403 naming them
        self.user_scopes_missing: set[str] = set()
        self._user_tokens: dict[str, str] = {}  # user access token -> its unionId
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> its unionId (each works once: rotated)
        self._auth_codes: dict[str, str] = {}  # authorization code -> unionId (each works once)
        self.suite_ticket = ""  # the latest suite_ticket pushed: the only one corpAccessToken accepts
        self.suite_tickets_made: list[tuple[str, int]] = []  # every ticket pushed and its eventBornTime, oldest first
        self._token_corps: dict[str, str] = {}  # an organization's token -> its organization
        self._union_corps: dict[str, str] = {}  # unionId -> the organization of an org_users user
        self.cards = CardPlatform(  # interactive cards: bot/sandbox/cards.py
            self._check_token,
            lambda: set(self.users) | {staff_id for _, staff_id in self.org_users},
            lambda: self.robot_codes or {self.client_id},
            self._notify,
        )

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=2**20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        return self.base_url

    async def close(self) -> None:
        self._closing.set()
        for closer in list(self._closers):
            closer.cancel()
        await self.drop_connections()
        for answering in list(self._answering):  # a slow or silent answer does not hold the shutdown
            answering.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a bot at this sandbox."""
        return {
            "DINGTALK_CLIENT_ID": self.client_id,
            "DINGTALK_CLIENT_SECRET": self.client_secret,
            "DINGTALK_API_BASE": self.base_url,
            "DINGTALK_OAPI_BASE": self.base_url,
        }

    # --- seeding and fault knobs ----------------------------------------------------------------------------

    def add_user(self, staff_id: str, union_id: str) -> None:
        self.users[staff_id] = union_id
        self.primary[union_id] = f"primary-{union_id}"

    def add_org_user(self, corp_id: str, staff_id: str, union_id: str) -> None:
        """An employee of one of the organizations an ISV app serves (a staff id is unique only within one)."""
        self.org_users[(corp_id, staff_id)] = union_id
        self._union_corps[union_id] = corp_id
        self.primary[union_id] = f"primary-{union_id}"

    def add_calendar(self, calendar_id: str, summary: str, scope: set[str] | None = None) -> None:
        self.calendars[calendar_id] = PublicCalendar(summary, scope)

    def subscribe(self, union_id: str, calendar_id: str) -> None:
        self.subscriptions[union_id].add(calendar_id)

    def fail_next(
        self, api: str, status: int, body: Any, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """The next `times` calls of `api` get this answer instead of the normal one."""
        self.answer_next(api, json_answer(status, body, headers), times)

    def answer_next(self, api: str, responder: Responder, times: int = 1) -> None:
        """The next `times` calls of `api` are answered by `responder` (see the answers below the class)."""
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
            return _json(200, {"errcode": 0, "errmsg": "ok"})

        self.answer_next(api, respond, times)

    def _carried_out_later(self, api: str) -> Responder:
        async def respond(request: web.Request) -> web.StreamResponse:
            segments = request.raw_path.partition("?")[0].split("/")
            self._late[api].append((unquote(segments[4]), unquote(segments[6])))
            await self._closing.wait()  # the client gives up or dies first
            return _error(500, "ServiceUnavailable", "gone")

        return respond

    def refuse_receiver(self, staff_id: str, listed_in: str, times: int = 1) -> None:
        """The next `times` batchSends to this user answer 200 with them in `listed_in` (one of UNDELIVERED_LISTS),
        and do not deliver, as DingTalk does."""
        assert listed_in in UNDELIVERED_LISTS
        self._receivers_refused[staff_id].extend([listed_in] * times)

    def delivered(self, data: dict[str, Any]) -> list[Recorded]:
        """The replies to this payload's conversation that DingTalk delivered (batchSend may answer 200 without)."""
        return [reply for reply in self.replies_to(data) if reply not in self.undelivered]

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
        self.handshake_delay = 0.0
        self.connect_fault = ""
        self.user_scopes_missing = set()
        self.cards.clear_faults()

    def sign_in(self, union_id: str) -> None:
        """The browser that opens the OAuth authorize page is signed in to DingTalk as this user."""
        self.signed_in = union_id

    def withdraw_consent(self, union_id: str) -> None:
        """The user withdrew their consent (Me → Security center → Privacy → App authorizations): their tokens
        answer 403 and their refresh tokens are refused."""
        self.withdrawn.add(union_id)

    def token_owner(self, token: str) -> str | None:
        """The unionId a user access token was issued to; None for the app's tokens."""
        return self._user_tokens.get(token)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid, as after DingTalk rotates them."""
        self._valid_tokens.clear()

    def tokens_of(self, corp_id: str) -> set[str]:
        """The organization tokens issued for this organization that are still valid."""
        return {token for token, corp in self._token_corps.items() if corp == corp_id and token in self._valid_tokens}

    # --- a third-party enterprise (ISV) app's events --------------------------------------------------------

    async def push_event(
        self,
        event_type: str,
        data: dict[str, Any],
        corp_id: str = "",
        event_id: str = "",
        socket: int | None = None,
        born_ms: int = 0,
    ) -> str:
        """An EVENT frame as DingTalk pushes it to an ISV app's Stream; returns its messageId (to wait for its ACK)."""
        message_id = f"event-{uuid.uuid4().hex}"
        headers = {
            "appId": self.client_id,
            "contentType": "application/json",
            "messageId": message_id,
            "time": str(int(time.time() * 1000)),
            "topic": "*",
            "eventType": event_type,
            "eventId": event_id or uuid.uuid4().hex,
            "eventCorpId": corp_id or self.corp_id,
            "eventBornTime": str(born_ms or int(time.time() * 1000)),
            "eventUnifiedAppId": self.client_id,
        }
        frame = {"specVersion": "1.0", "type": "EVENT", "headers": headers, "data": json.dumps(data)}
        await self.push_raw(json.dumps(frame), socket)
        return message_id

    async def push_suite_ticket(self, ticket: str = "", event_id: str = "") -> str:
        """A new suite ticket, pushed as DingTalk does every 5 hours; it replaces the one before."""
        self.suite_ticket = ticket or f"ticket-{uuid.uuid4().hex}"
        self.issued_secrets.append(self.suite_ticket)
        self.suite_tickets_made.append((self.suite_ticket, int(time.time() * 1000)))
        return await self.push_event("suite_ticket", {"suiteTicket": self.suite_ticket}, event_id=event_id)

    async def push_superseded_ticket(self, index: int = -2) -> str:
        """An older ticket's event pushed late (a re-push, or a delivery that waited), with its own eventBornTime
        and a new eventId: DingTalk accepts only the newest ticket, so a bot that keeps this one is not ready."""
        ticket, born_ms = self.suite_tickets_made[index]
        return await self.push_event("suite_ticket", {"suiteTicket": ticket}, born_ms=born_ms)

    async def authorize_corp(self, corp_id: str, corp_name: str = "Sandbox Org") -> str:
        """The organization authorizes the app: `org_suite_auth` is pushed."""
        self.authorized_corps.add(corp_id)
        data = {"authCorpInfo": {"corpid": corp_id, "corpName": corp_name}, "permanentCode": uuid.uuid4().hex}
        return await self.push_event("org_suite_auth", data, corp_id)

    async def relieve_corp(self, corp_id: str, socket: int | None = None) -> str:
        """The organization removes the app: its tokens stop working and `org_suite_relieve` is pushed (to one
        connection, as every push is)."""
        self.authorized_corps.discard(corp_id)
        self._valid_tokens -= {token for token, corp in self._token_corps.items() if corp == corp_id}
        return await self.push_event("org_suite_relieve", {}, corp_id, socket=socket)

    # --- messages into the bot ------------------------------------------------------------------------------

    def chat(
        self,
        text: str | None,
        staff_id: str = "",
        *,
        group: bool = False,
        voice: bool = False,
        webhook_expires_in: float = 5400.0,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A chatbot callback payload as DingTalk sends it; `text=None` makes a picture message, `voice=True` an audio
        message whose speech-to-text (`content.recognition`) is `text`."""
        now_ms = int(time.time() * 1000)
        # every field and id shaped as in [KB] 0718's examples, so what the bot keeps of a message is its real size
        data: dict[str, Any] = {
            "conversationId": _base64_id("cid", 18),
            "conversationType": "2" if group else "1",
            "chatbotCorpId": self.corp_id,
            "chatbotUserId": f"$:LWCP_v1:${_opaque(self.client_id, 32)}",
            "msgId": _base64_id("msg"),
            "senderNick": "Sandbox User",
            "isAdmin": False,
            "senderStaffId": staff_id,
            "senderId": f"$:LWCP_v1:${_opaque(staff_id, 32)}",
            "senderCorpId": self.corp_id,
            "senderPlatform": "Mac",
            "sessionWebhook": f"{self.base_url}/robot/sendBySession?session={uuid.uuid4().hex}",
            "sessionWebhookExpiredTime": now_ms + int(webhook_expires_in * 1000),
            "createAt": now_ms,
            "isInAtList": True,
            "robotCode": self.client_id,
        }
        if group:
            data.update(conversationTitle="测试群", atUsers=[{"dingtalkId": data["chatbotUserId"]}])
        if voice:
            data.update(msgtype="audio", content={"downloadCode": "dc-1", "duration": 2300, "recognition": text})
        elif text is None:
            data.update(msgtype="picture", content={"downloadCode": "dc-1", "pictureDownloadCode": "dc-1"})
        else:
            data.update(msgtype="text", text={"content": f" {text}" if group else text})
        data.update(overrides)
        return data

    def chat_over_quota(self, staff_id: str = "") -> dict[str, Any]:
        """A callback as DingTalk sends it once the organization's monthly push quota is used up: an error code and
        message instead of the message's text or content."""
        data = self.chat(None, staff_id)
        del data["content"], data["msgtype"]
        data.update(errCode=20001, errMsg="机器人推送消息数量已超过本月限额")
        return data

    async def push(self, data: dict[str, Any], message_id: str = "", socket: int | None = None) -> str:
        """Send a chatbot CALLBACK frame to the bot; returns the frame's messageId."""
        message_id = message_id or _frame_message_id()
        self._pushed_at.setdefault(str(data.get("msgId")), len(self.requests))
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {
                "appId": self.client_id,
                "contentType": "application/json",
                "messageId": message_id,
                "time": str(int(time.time() * 1000)),
                "topic": CHATBOT_TOPIC,
            },
            "data": json.dumps(data, ensure_ascii=False),
        }
        await self.push_raw(json.dumps(frame, ensure_ascii=False), socket)
        return message_id

    async def press_card(
        self, out_track_id: str, user_id: str, params: dict[str, str], corp_id: str = "", **press: Any
    ) -> str:
        """`user_id` presses a `request` button of a card: the card callback frame; returns its messageId."""
        message_id, frame = self.cards.press_frame(
            out_track_id, user_id, params, corp_id=corp_id or self.corp_id, app_id=self.client_id, **press
        )
        await self.push_raw(frame)
        return message_id

    async def push_system(self, topic: str, data: dict[str, Any], socket: int | None = None) -> str:
        """A SYSTEM frame (ping) with a messageId to ACK; `disconnect` goes to disconnect()."""
        message_id = f"system-{uuid.uuid4().hex}"
        headers = {"contentType": "application/json", "messageId": message_id, "topic": topic}
        await self.push_raw(json.dumps({"type": "SYSTEM", "headers": headers, "data": json.dumps(data)}), socket)
        return message_id

    async def disconnect(self, socket: int = -1) -> None:
        """Ask the bot to reconnect, as DingTalk does: a SYSTEM `disconnect` frame without a messageId (no ACK
        expected), then the socket is closed `disconnect_close_seconds` later."""
        await self.wait_connected()
        await self._disconnect(self._sockets[socket])

    async def _disconnect(self, socket: web.WebSocketResponse) -> None:
        headers = {"contentType": "application/json", "time": str(int(time.time() * 1000)), "topic": "disconnect"}
        data = json.dumps({"reason": "connection is expired"})
        await socket.send_str(json.dumps({"specVersion": "1.0", "type": "SYSTEM", "headers": headers, "data": data}))
        closer = asyncio.create_task(self._close_later(socket, self.disconnect_close_seconds))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    @staticmethod
    async def _close_later(socket: web.WebSocketResponse, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await socket.close()

    async def push_raw(self, text: str, socket: int | None = None) -> None:
        """Send a text frame on the connection at index `socket` (oldest first) or, as DingTalk does, on one chosen
        at random."""
        await self.wait_connected()
        chosen = self._sockets[socket] if socket is not None else random.choice(self._sockets)  # noqa: S311
        await chosen.send_str(text)

    async def drop_connections(self) -> None:
        """Close every Stream socket from the server side, as a DingTalk gateway restart does."""
        for socket in list(self._sockets):
            await socket.close()

    # --- waiting for what the bot did -----------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until predicate() returns something truthy, and return it."""
        async with self._changed:
            return await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: len(self._sockets) >= count, timeout)

    async def wait_ack(self, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
        result: dict[str, Any] = await self.wait_for(lambda: self.acks.get(message_id), timeout)
        return result

    async def wait_reply(self, data: dict[str, Any], timeout: float = 10.0) -> Recorded:
        """The first reply the bot sent to the conversation of this payload, by any route."""
        result: Recorded = await self.wait_for(lambda: next(iter(self.replies_to(data)), None), timeout)
        return result

    def replies_to(self, data: dict[str, Any]) -> list[Recorded]:
        """What the bot sent into this payload's conversation since it was pushed: to its sessionWebhook, or
        through the robot OpenAPI to its group or, for a 1:1 chat, to its sender."""
        webhook = data["sessionWebhook"]
        own_path = webhook.removeprefix(self.base_url) if webhook.startswith(self.base_url + "/") else None
        since = self._pushed_at.get(str(data.get("msgId")), 0)
        return [request for request in self.requests[since:] if self._answers(request, data, own_path)]

    @staticmethod
    def _answers(request: Recorded, data: dict[str, Any], own_path: str | None) -> bool:
        if request.api == "webhook":
            return request.raw_path == own_path
        if request.api == "groupSend":
            return bool(request.json().get("openConversationId") == data["conversationId"])
        one_to_one = data["conversationType"] == "1"
        return request.api == "batchSend" and one_to_one and request.json().get("userIds") == [data["senderStaffId"]]

    def calls(self, api: str) -> list[Recorded]:
        return [request for request in self.requests if request.api == api]

    # --- the platform ---------------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def connections(self) -> int:
        return len(self._sockets)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path
        segments = raw_path.partition("?")[0].split("/")
        api = _api_name(request.method, segments)
        if api == "connect":
            return await self._websocket(request)
        body = await request.read()
        now = time.monotonic()
        record = Recorded(api, request.method, raw_path, dict(request.headers), body, now)
        self.requests.append(record)
        request[_RECORDED] = record
        if api == "webhook":
            self.webhook_replies.setdefault(raw_path, record)
        await self._notify()
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        answering = asyncio.current_task()
        assert answering is not None
        self._answering.add(answering)
        try:
            response = await self._answer(request, api, segments, body, now)
            if self.close_connections:
                response.force_close()
            if api in _REPLY_APIS and not 200 <= response.status < 300:
                self.undelivered.append(record)
            return response
        finally:
            self._answering.discard(answering)
            self.concurrent -= 1

    async def _answer(
        self, request: web.Request, api: str, segments: list[str], body: bytes, now: float
    ) -> web.StreamResponse:
        latency = self.api_latency.get(api, self.latency)
        if api != "gateway" and latency:
            await asyncio.sleep(latency)
        if api not in ("gateway", "webhook") and self._over_qps_limit(api, now):
            self.throttled += 1
            if api == "user/get":
                return _json(200, {"errcode": 90018, "errmsg": "app qps limit"})
            return _error(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "app qps limit")
        if self._faults[api]:
            return await self._faults[api].popleft()(request)
        if api in CARD_ROUTES:
            route: CardRoute = getattr(self.cards, CARD_ROUTES[api])
            return await route(request, _loads(body))
        handler = getattr(self, f"_api_{api.replace('/', '_')}", None)
        if handler is None:
            return _json(404, {"code": "NotFound", "message": f"no such API: {request.method} {request.raw_path}"})
        response: web.StreamResponse = await handler(request, segments, _loads(body))
        return response

    def _over_qps_limit(self, api: str, now: float) -> bool:
        """A sliding one-second window per API on arrival times, as strict as DingTalk's per-app limit."""
        if not self.qps_limit:
            return False
        calls = self._recent_calls[api]
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        calls.append(now)
        return len(calls) > self.qps_limit

    async def _api_gateway(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return _error(401, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = time.monotonic() + TICKET_SECONDS
        self.issued_secrets.append(ticket)
        host = request.host
        return _json(200, {"endpoint": f"ws://{host}/connect", "ticket": ticket})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.connect_attempts += 1
        await self._notify()
        if self.handshake_delay:
            with contextlib.suppress(TimeoutError):  # close() releases held handshakes at once
                await asyncio.wait_for(self._closing.wait(), self.handshake_delay)
        if request.transport is None or request.transport.is_closing():  # the client gave up waiting
            return web.Response(status=408)
        ticket = request.query.get("ticket", "")
        if self._tickets.pop(ticket, 0) < time.monotonic():  # one connection per ticket, within 90 s
            return web.Response(status=403, text="invalid ticket")
        silent = self.silent_connections > 0
        self.silent_connections -= silent
        socket = web.WebSocketResponse(autoping=not silent)
        await socket.prepare(request)
        if silent:
            self._silent.add(socket)
        self._sockets.append(socket)
        self.connected_at.append(time.monotonic())
        await self._notify()
        try:
            await self._greet(socket)
            async for frame in socket:
                if frame.type == WSMsgType.TEXT and socket not in self._silent:
                    ack = json.loads(frame.data)
                    self.acks[ack["headers"]["messageId"]] = ack
                    self.cards.acked(ack)
                    await self._notify()
        finally:
            self._sockets.remove(socket)
            self._silent.discard(socket)
            await self._notify()
        return socket

    async def _greet(self, socket: web.WebSocketResponse) -> None:
        if self.connect_fault == "disconnect":
            await self._disconnect(socket)
        elif self.connect_fault == "drop":
            await socket.close()
        elif self.connect_fault == "oversized":  # over the bot's 4 MiB frame limit: it closes the socket
            with contextlib.suppress(ConnectionError):
                await socket.send_str(json.dumps({"type": "SYSTEM", "headers": {}, "data": "x" * (5 * 2**20)}))

    async def _api_accessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("appKey") != self.client_id or body.get("appSecret") != self.client_secret:
            return _error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = f"sandbox-token-{uuid.uuid4().hex}"
        self._valid_tokens.add(token)
        self.issued_secrets.append(token)
        return _json(200, {"accessToken": token, "expireIn": self.token_lifetime})

    async def _api_authorize(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        """login.dingtalk.com/oauth2/auth: the signed-in user consents at once; the browser goes back to
        redirect_uri with an authCode and the state, as DingTalk sends it."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or query.get("response_type") != "code" or not redirect_uri:
            return web.Response(status=400, text="invalid authorize request")
        if "openid" not in query.get("scope", "").split() or not self.signed_in:
            return web.Response(status=400, text="invalid scope, or nobody signed in")
        code = f"sandbox-code-{uuid.uuid4().hex}"
        self._auth_codes[code] = self.signed_in
        self.withdrawn.discard(self.signed_in)  # consenting again
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode({'authCode': code, 'state': query.get('state', '')})}"
        return web.Response(status=302, headers={"Location": location})

    async def _api_userAccessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return _error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        grant = body.get("grantType")
        if grant == "authorization_code":
            union_id = self._auth_codes.pop(str(body.get("code")), None)
            if union_id is None:
                return _error(400, "invalidAuthCode", "不合法的临时授权码")
        elif grant == "refresh_token":
            union_id = self._refresh_tokens.pop(str(body.get("refreshToken")), None)
            if union_id is None or union_id in self.withdrawn:
                return _error(400, "invalidRefreshToken", "不合法的refresh_token")
        else:
            return _error(400, "invalidParameter", "grantType is invalid")
        token, refresh = f"sandbox-user-token-{uuid.uuid4().hex}", f"sandbox-refresh-{uuid.uuid4().hex}"
        self._valid_tokens.add(token)
        self._user_tokens[token] = union_id
        self._refresh_tokens[refresh] = union_id
        self.issued_secrets += [token, refresh]
        answer = {
            "accessToken": token,
            "refreshToken": refresh,
            "expireIn": self.token_lifetime,
            "corpId": self.corp_id,
        }
        return _json(200, answer)

    async def _api_users_me(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        denied = self._check_token(request) or self._check_user_token(token, None)
        if denied is not None:
            return denied
        union_id = self._user_tokens.get(token)
        if union_id is None:  # an app token has no "me"
            return _error(404, "invalidParameter.user.notFound", "用户不存在")
        me = {"nick": "Sandbox User", "unionId": union_id, "openId": f"open-{union_id}", "stateCode": "86"}
        return _json(200, me)

    def _check_user_token(self, token: str, union_id: str | None) -> web.Response | None:
        """A user's token acts only for that user, and not once they withdrew their consent."""
        owner = self._user_tokens.get(token)
        if owner is None:
            return None
        if owner in self.withdrawn or (union_id is not None and union_id != owner):
            return _error(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "没有调用该接口的权限")
        if self.user_scopes_missing and union_id is not None:
            # a missing permission names it (AccessDeniedDetail.requiredScopes, reference §4.2)
            request_id = uuid.uuid4().hex.upper()
            body = {
                "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                "message": "没有调用该接口的权限",
                "requestid": request_id,
                "accessdenieddetail": {"requiredScopes": sorted(self.user_scopes_missing)},
            }
            return _json(403, body, request_id)
        return None

    async def _api_corpAccessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("suiteKey") != self.client_id or body.get("suiteSecret") != self.client_secret:
            return _error(400, "invalidSuiteKey", "suiteKey或suiteSecret不合法")
        if not self.suite_ticket or body.get("suiteTicket") != self.suite_ticket:
            return _error(400, "invalidSuiteTicket", "suiteTicket不合法")
        corp_id = body.get("authCorpId")
        if corp_id not in self.authorized_corps:
            return _error(400, "invalidAuthInfo", "授权关系不存在")
        token = f"sandbox-corp-token-{uuid.uuid4().hex}"  # a new one each time, as DingTalk documents
        self._valid_tokens.add(token)
        self._token_corps[token] = corp_id
        self.issued_secrets.append(token)
        return _json(200, {"accessToken": token, "expireIn": self.token_lifetime})

    async def _api_user_get(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        token = request.query.get("access_token", "")
        if token not in self._valid_tokens:
            return _json(
                200, {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token", "errmsg": "invalid token"}
            )
        corp_id = self._token_corps.get(token)
        staff_id = body.get("userid", "")
        union_id = self.users.get(staff_id) if corp_id is None else self.org_users.get((corp_id, staff_id))
        if union_id is None:
            return _json(200, {"errcode": 60121, "errmsg": "找不到该用户", "request_id": _topapi_request_id()})
        result = {**_USER_DETAILS, "userid": body["userid"], "unionid": union_id, "name": "Sandbox User"}
        return _json(200, {"errcode": 0, "errmsg": "ok", "result": result, "request_id": _topapi_request_id()})

    async def _api_unsubscribe(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return self._change_subscription(request, segments, subscribe=False)

    async def _api_subscribe(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        return self._change_subscription(request, segments, subscribe=True)

    def _change_subscription(self, request: web.Request, segments: list[str], *, subscribe: bool) -> web.Response:
        union_id, calendar_id = unquote(segments[4]), unquote(segments[6])
        for late_union_id, late_calendar_id in self._late.pop("subscribe" if subscribe else "unsubscribe", []):
            if subscribe:
                self.subscriptions[late_union_id].add(late_calendar_id)
            else:
                self.subscriptions[late_union_id].discard(late_calendar_id)
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        denied = self._check_token(request) or self._check_user_token(token, union_id)
        if denied is not None:
            return denied
        denied = self._check_organization(request, union_id)
        if denied is not None:
            return denied
        if not calendar_id:
            return _error(400, "invalidParameter", "calendarId cannot be blank")
        if calendar_id == self.primary.get(union_id):
            return _error(400, "invalidParameter", "calendar type invalid")
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            return _error(400, "invalidParameter", "forwardErrorMessage")
        if calendar.scope is not None and union_id not in calendar.scope:
            return _error(400, "permissionDenied", NOT_IN_SCOPE)
        if self.strict_subscriptions and (calendar_id in self.subscriptions[union_id]) == subscribe:
            self.repeated_changes += 1
            return _error(400, "invalidParameter", "forwardErrorMessage")
        if subscribe:
            self.subscriptions[union_id].add(calendar_id)
            return web.Response(status=200, headers={"x-acs-request-id": _acs_request_id()})
        self.subscriptions[union_id].discard(calendar_id)
        return _json(200, {"result": True})

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
        return _json(200, {"response": {"calendars": entries}})

    async def _api_webhook(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        # An actionCard's buttons travel as btn_json_list, at most 1,000 characters: errcode 34016 beyond
        # ([KB] 0013 server-api-error-codes, 34016 "参数长度超过限制" next to single_title 20 / single_url 500).
        buttons = (body.get("actionCard") or {}).get("btns") if isinstance(body, dict) else None
        if buttons and len(json.dumps(buttons, ensure_ascii=False, separators=(",", ":"))) > BUTTON_LIST_LIMIT:
            return _json(200, {"errcode": 34016, "errmsg": "btn_json_list长度超过限制"})
        if self.webhook_without_errcode:
            # The response body of a sessionWebhook post is not documented (reference §6.1); the official Python SDK
            # checks only the HTTP status (dingtalk-stream 0.24.3, ChatbotHandler.reply_markdown: raise_for_status).
            return web.Response(status=200)
        return _json(200, {"errcode": 0, "errmsg": "ok"})

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
            self.undelivered.append(request[_RECORDED])
        return _json(200, answer)

    async def _api_groupSend(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        denied = self._check_token(request) or self._check_robot_code(body)
        return denied or _json(200, {"processQueryKey": uuid.uuid4().hex})

    def _check_robot_code(self, body: Any) -> web.Response | None:
        """DingTalk sends only as a robot the token's app owns; for an ISV app that is the robot's own code."""
        if body.get("robotCode") not in (self.robot_codes or {self.client_id}):
            return _error(400, "invalidParameter.robotCode.auth", "robotCode 不合法")
        return None

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("x-acs-dingtalk-access-token")
        if token is None:
            return _error(400, "AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token")
        if token not in self._valid_tokens:
            return _error(400, "InvalidAuthentication", "不合法的access_token")
        return None

    def _check_organization(self, request: web.Request, union_id: str) -> web.Response | None:
        """An organization's token acts only on that organization's users."""
        token_corp = self._token_corps.get(request.headers.get("x-acs-dingtalk-access-token", ""))
        user_corp = self._union_corps.get(union_id)
        if (token_corp or user_corp) and token_corp != user_corp:
            return _error(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "用户不属于该组织")
        return None


CARD_ROUTES = {"card/createAndDeliver": "create_and_deliver", "card/update": "update"}


def _api_name(method: str, segments: list[str]) -> str:
    """Name the API a raw path calls; a calendar id stays one segment only if the bot encoded it."""
    path = "/".join(segments)
    if method == "GET" and len(segments) == 6 and segments[1:4] == ["v1.0", "calendar", "users"]:
        return "calendars" if segments[5] == "calendars" else "unknown"
    calendar_call = len(segments) == 8 and segments[1:4] == ["v1.0", "calendar", "users"] and segments[5] == "calendars"
    if method == "POST" and calendar_call and segments[7] in ("unsubscribe", "subscribe"):
        return segments[7]
    known = {
        ("POST", "/v1.0/gateway/connections/open"): "gateway",
        ("GET", "/connect"): "connect",
        ("POST", "/v1.0/oauth2/accessToken"): "accessToken",
        ("GET", "/oauth2/auth"): "authorize",
        ("POST", "/v1.0/oauth2/userAccessToken"): "userAccessToken",
        ("GET", "/v1.0/contact/users/me"): "users/me",
        ("POST", "/v1.0/oauth2/corpAccessToken"): "corpAccessToken",
        ("POST", "/topapi/v2/user/get"): "user/get",
        ("POST", "/robot/sendBySession"): "webhook",
        ("POST", "/v1.0/robot/oToMessages/batchSend"): "batchSend",
        ("POST", "/v1.0/robot/groupMessages/send"): "groupSend",
        ("POST", "/v1.0/card/instances/createAndDeliver"): "card/createAndDeliver",
        ("PUT", "/v1.0/card/instances"): "card/update",
    }
    return known.get((method, path), "unknown")


# The rest of a topapi/v2/user/get result as the doc's example shows it ([KB] 0056): the bot reads only `unionid`, but
# parses all of it, so the sandbox sends all of it
_USER_DETAILS: dict[str, Any] = {
    "active": True,
    "admin": False,
    "avatar": "https://static-legacy.dingtalk.com/media/lADPDg7mViaUW2jNAu7NAu4_750_750.jpg",
    "boss": False,
    "dept_id_list": [2, 3, 4],
    "dept_order_list": [{"dept_id": 2, "order": 1}],
    "email": "test@xxx.com",
    "exclusive_account": False,
    "extension": '{"爱好":"旅游","年龄":"24"}',
    "hide_mobile": False,
    "hired_date": 1597573616828,
    "job_number": "4",
    "leader_in_dept": [{"dept_id": 2, "leader": False}],
    "manager_userid": "manager240",
    "mobile": "18513027676",
    "org_email": "test@xxx.com",
    "real_authed": True,
    "remark": "备注",
    "role_list": [{"group_name": "默认", "id": 1, "name": "负责人"}],
    "senior": False,
    "state_code": "86",
    "telephone": "010-86123456-2345",
    "title": "技术总监",
    "union_emp_ext": {},
    "work_place": "未来park",
}


def _topapi_request_id() -> str:
    """topapi's request_id: 12 lowercase letters and digits ("4e7exhl6pm0t" in [KB] 0056)."""
    return uuid.uuid4().hex[:12]


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


def _loads(body: bytes) -> Any:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --- answers for Sandbox.answer_next: how a misbehaving server or proxy answers ---------------------------------


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Responder:
    """Any status with any JSON body (a string body is sent as a JSON string)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = _json(status, body)
        response.headers.update(headers or {})
        return response

    return respond


def raw_answer(status: int, text: str, content_type: str = "text/html") -> Responder:
    """A body that is not JSON at all, as a proxy or an IP ban page answers."""

    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text, content_type=content_type)

    return respond


def huge_answer(size: int) -> Responder:
    """200 with `size` bytes of JSON-looking text, streamed without a Content-Length, never held in memory whole."""
    chunk = b" " * 2**16

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the bot stops reading: the connection goes
            for _ in range(size // len(chunk)):
                await response.write(chunk)
        return response

    return respond


def gzip_answer(body: Any) -> Responder:
    """200 with this JSON body compressed, `Content-Encoding: gzip`, as a CDN in front of an API may answer."""
    compressed = gzip.compress(json.dumps(body).encode())

    async def respond(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(status=200, body=compressed, headers=headers)

    return respond


def gzip_bomb(size: int) -> Responder:
    """200 with `Content-Encoding: gzip`: a small body that inflates to `size` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * 2**20
    body = b"".join(compressor.compress(block) for _ in range(size // len(block))) + compressor.flush()

    async def respond(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(body)
        return response

    return respond


def trickle_answer(body: Any, interval: float) -> Responder:
    """200 with a JSON body sent one byte every `interval` seconds: each read is quick, the whole answer is not."""
    content = json.dumps(body).encode()

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(content)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for byte in range(len(content)):
                await response.write(content[byte : byte + 1])
                await asyncio.sleep(interval)
        return response

    return respond


def cut_off_answer(body: Any) -> Responder:
    """200 with this JSON body, of which only the headers and the first half are sent before the connection is
    closed: the request was received and carried out, its answer lost on the way."""
    content = json.dumps(body).encode()

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(content)
        await response.prepare(request)
        await response.write(content[: len(content) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    return respond


def late_answer(seconds: float, body: Any) -> Responder:
    """200 with this JSON body, after `seconds`: a slow server (what it was asked has been done already)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return _json(200, body)

    return respond


def _json(status: int, body: Any, request_id: str = "") -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))
    response.headers["x-acs-request-id"] = request_id or _acs_request_id()
    return response


def _acs_request_id() -> str:
    """The new-style API's request id: an upper-case UUID ("30EE8654-…" in satorijs/satori#240, reference §4.1)."""
    return str(uuid.uuid4()).upper()


def _error(status: int, code: str, message: str) -> web.Response:
    request_id = _acs_request_id()
    return _json(status, {"code": code, "message": message, "requestid": request_id}, request_id)
