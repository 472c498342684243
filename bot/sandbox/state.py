"""What the sandbox knows (users, organizations, calendars, tokens, requests, ACKs), its seeding and its waits."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.sandbox.cards import CardPlatform
from bot.sandbox.http import Recorded, Responder, error_response, json_response


@dataclass
class PublicCalendar:
    summary: str
    scope: set[str] | None = None  # unionIds allowed to subscribe; None means everyone


@dataclass
class PlatformState:
    """The fake platform's state and knobs. Tests and the demo seed it, push messages into it and read what the bot
    sent; the route groups (http_api/, stream, faults) answer from it."""

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
    webhook_without_errcode: bool = False  # the sessionWebhook answers 200 with an empty body (see http_api/robot)
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

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a bot at this sandbox."""
        return {
            "DINGTALK_CLIENT_ID": self.client_id,
            "DINGTALK_CLIENT_SECRET": self.client_secret,
            "DINGTALK_API_BASE": self.base_url,
            "DINGTALK_OAPI_BASE": self.base_url,
        }

    # --- seeding --------------------------------------------------------------------------------------------

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

    def carry_out_late(self, api: str) -> None:
        """The changes finish_late() left unanswered are done by the time the next call of `api` is read, however
        that call is answered."""
        for union_id, calendar_id in self._late.pop(api, []):
            if api == "subscribe":
                self.subscriptions[union_id].add(calendar_id)
            else:
                self.subscriptions[union_id].discard(calendar_id)

    def sign_in(self, union_id: str) -> None:
        """The browser that opens the OAuth authorize page is signed in to DingTalk as this user."""
        self.signed_in = union_id

    def withdraw_consent(self, union_id: str) -> None:
        """The user withdrew their consent (Me → Security center → Privacy → App authorizations): their tokens
        answer 403 and their refresh tokens are refused."""
        self.withdrawn.add(union_id)

    # --- tokens: who may act --------------------------------------------------------------------------------

    def token_owner(self, token: str) -> str | None:
        """The unionId a user access token was issued to; None for the app's tokens."""
        return self._user_tokens.get(token)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid, as after DingTalk rotates them."""
        self._valid_tokens.clear()

    def tokens_of(self, corp_id: str) -> set[str]:
        """The organization tokens issued for this organization that are still valid."""
        return {token for token, corp in self._token_corps.items() if corp == corp_id and token in self._valid_tokens}

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("x-acs-dingtalk-access-token")
        if token is None:
            return error_response(400, "AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token")
        if token not in self._valid_tokens:
            return error_response(400, "InvalidAuthentication", "不合法的access_token")
        return None

    def _check_user_token(self, token: str, union_id: str | None) -> web.Response | None:
        """A user's token acts only for that user, and not once they withdrew their consent."""
        owner = self._user_tokens.get(token)
        if owner is None:
            return None
        if owner in self.withdrawn or (union_id is not None and union_id != owner):
            return error_response(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "没有调用该接口的权限")
        if self.user_scopes_missing and union_id is not None:
            # a missing permission names it (AccessDeniedDetail.requiredScopes, reference §4.2)
            request_id = uuid.uuid4().hex.upper()
            body = {
                "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                "message": "没有调用该接口的权限",
                "requestid": request_id,
                "accessdenieddetail": {"requiredScopes": sorted(self.user_scopes_missing)},
            }
            return json_response(403, body, request_id)
        return None

    def _check_organization(self, request: web.Request, union_id: str) -> web.Response | None:
        """An organization's token acts only on that organization's users."""
        token_corp = self._token_corps.get(request.headers.get("x-acs-dingtalk-access-token", ""))
        user_corp = self._union_corps.get(union_id)
        if (token_corp or user_corp) and token_corp != user_corp:
            return error_response(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "用户不属于该组织")
        return None

    # --- waiting for what the bot did -----------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until predicate() returns something truthy, and return it."""
        async with self._changed:
            return await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    @property
    def connections(self) -> int:
        return len(self._sockets)

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
        return [request for request in self.requests[since:] if _answers(request, data, own_path)]

    def delivered(self, data: dict[str, Any]) -> list[Recorded]:
        """The replies to this payload's conversation that DingTalk delivered (batchSend may answer 200 without)."""
        return [reply for reply in self.replies_to(data) if reply not in self.undelivered]

    def calls(self, api: str) -> list[Recorded]:
        return [request for request in self.requests if request.api == api]


def _answers(request: Recorded, data: dict[str, Any], own_path: str | None) -> bool:
    if request.api == "webhook":
        return request.raw_path == own_path
    if request.api == "groupSend":
        return bool(request.json().get("openConversationId") == data["conversationId"])
    one_to_one = data["conversationType"] == "1"
    return request.api == "batchSend" and one_to_one and request.json().get("userIds") == [data["senderStaffId"]]
