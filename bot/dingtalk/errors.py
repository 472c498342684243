"""Why a DingTalk call failed, as a tree (httpx's is the model): DingTalk refused it, could not be reached, or
answered something that is not what it documents; and, outside that tree, the bot's own reasons for not making a call.

    DingTalkError
    ├── Refused            DingTalk answered with an error: its code, message and request id
    ├── Unreachable        no answer came back
    │   ├── ConnectFailed  no connection was made: nothing was sent
    │   │   ├── TlsFailed      the TLS handshake failed
    │   │   └── ProxyFailed    the HTTPS proxy could not be reached
    │   ├── TimedOut       sent, but no answer within the time
    │   └── ConnectionLost sent, but the answer was cut off
    └── MalformedAnswer    a 2xx answer that is not the documented shape
        └── UnreadableAnswer  too large or undecodable: what it said is unknown

    BotCondition           the bot itself, not DingTalk, stopped the call
    ├── OutOfTime          the command's time ran out (before a call, or waiting for a rate-limit slot)
    ├── NotReady           an ISV app without a suite ticket yet: no organization token
    ├── OrganizationUnnamed  an ISV message that names no organization: no token to use
    ├── NoRobotCode        an ISV message without its robot's code: nothing to send a card as
    ├── UnusableUrl        a URL (a sessionWebhook) that cannot be requested
    ├── OutOfDescriptors   no connection: the process (or the system) has no file descriptor left
    └── CardHeldBack       the card step cannot be recorded: the card is left to whoever resumes the command

Each kind answers the same questions (temporary? safe to send again? unanswered? a throttle? the token rejected?),
so the client's retries and the replies' fallbacks read them the same way. `code` is a label for logs and cards
(DingTalk's code, or the name of what happened); no decision is taken by comparing it, except DingTalk's own
documented codes of a Refused."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import httpx

_THROTTLE_CODES = ("Forbidden.AccessDenied.Qps", "Forbidden.AccessDenied.Qpm", "system.busy", "systemBusy")
# the robot API's own limits (§10.2): per robot, per receiver, per group and per minute; all pass
_ROBOT_THROTTLE_CODES = frozenset(
    {"send.too.fast", "send.byToken.tooFast", "too.many.group", "too.many.people", "toomuch.msg"}
)
_SERVER_ERROR_CODES = frozenset({"internalError", "operationTimeout", "service.timeout"})
QUOTA_EXHAUSTED = "Forbidden.AccessDenied.ApiCountLimitForOrg"  # the organization's monthly calls: not temporary
FLOW_CONTROLLED = "flowControlledStaffIdList"  # batchSend answered 200 but throttled this receiver
_TOPAPI_THROTTLE_ERRCODES = ("90002", "90018")
_TOPAPI_BUSY_ERRCODE = "-1"
_TOPAPI_TOKEN_ERRCODES = ("40014", "42001", "40001")


class _Judged:
    """What the client's retries and the replies' fallbacks ask of any failure; each kind sets its answers."""

    _throttle: ClassVar[bool] = False
    _temporary: ClassVar[bool] = False
    _safe_to_resend: ClassVar[bool] = False
    _unanswered: ClassVar[bool] = False
    # set on a failure of a call an earlier try of which got no answer: that try may have been carried out, so this
    # failure does not say the call had no effect (and a refusal such as "not subscribed" may answer a done change)
    after_unanswered = False
    # set on a failure to get the token a call needed: that call itself was not sent (this time)
    before_the_call = False

    @property
    def is_throttle(self) -> bool:
        return self._throttle

    @property
    def is_temporary(self) -> bool:
        """The same call may work a moment later."""
        return self._temporary

    @property
    def is_safe_to_resend(self) -> bool:
        """The request was surely not carried out: sent again, a message still arrives once."""
        return self._safe_to_resend or self.before_the_call

    @property
    def is_unanswered(self) -> bool:
        """The request may have reached DingTalk and been carried out; no answer (or no readable one) came back."""
        return self._unanswered and not self.before_the_call

    @property
    def is_token_rejected(self) -> bool:
        return False


class DingTalkError(_Judged, Exception):
    """A call to DingTalk failed: DingTalk refused it, could not be reached, or answered what it does not document."""

    _temporary = True

    def __init__(self, status: int, code: str, message: str = "", request_id: str = "") -> None:
        super().__init__(f"DingTalk error {status} {code}")
        self.status = status  # the HTTP status; 0 when none came
        self.code = code
        self.message = message
        self.request_id = request_id


class Refused(DingTalkError):
    """DingTalk answered with an error: an HTTP error status, or a code in a 2xx answer (topapi's errcode)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        request_id: str = "",
        required_scopes: tuple[str, ...] = (),
        sub_code: str = "",
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.required_scopes = required_scopes
        self.sub_code = sub_code

    @property
    def is_throttle(self) -> bool:
        if self.code == QUOTA_EXHAUSTED:
            return False
        return (
            self.status == 429
            or self.code.startswith(_THROTTLE_CODES)
            or self.code in _ROBOT_THROTTLE_CODES
            or self.code in _TOPAPI_THROTTLE_ERRCODES
            or self.code == FLOW_CONTROLLED
        )

    @property
    def is_temporary(self) -> bool:
        """Throttling or a server error; a used-up monthly quota never is."""
        if self.code == QUOTA_EXHAUSTED:
            return False
        if self.status >= 500 or self.is_throttle:
            return True
        return self.code in _SERVER_ERROR_CODES or self.code == _TOPAPI_BUSY_ERRCODE

    @property
    def is_safe_to_resend(self) -> bool:
        """DingTalk answered a server error or a throttle: it did not carry the request out."""
        return self.status >= 500 or self.is_throttle

    @property
    def is_token_rejected(self) -> bool:
        if self.status == 401 or (self.status == 400 and self.code == "InvalidAuthentication"):
            return True
        return (self.code == "88" and self.sub_code == "40014") or self.code in _TOPAPI_TOKEN_ERRCODES


class Unreachable(DingTalkError):
    """No answer came back (a transport failure the bot's own transport does not tell apart further: neither surely
    unsent nor surely sent)."""

    def __init__(self, code: str, message: str = "DingTalk could not be reached") -> None:
        super().__init__(0, code, message)


class ConnectFailed(Unreachable):
    """No connection was made (refused, no route, name unknown, TLS, the proxy): nothing was sent."""

    _safe_to_resend = True


class TlsFailed(ConnectFailed):
    """The TLS handshake failed (a certificate not trusted, no protocol in common): nothing was sent."""


class ProxyFailed(ConnectFailed):
    """The HTTPS proxy (HTTPS_PROXY) could not be reached: nothing was sent."""


class TimedOut(Unreachable):
    """The request was sent (or partly sent) and no answer came within the time: it may have been carried out."""

    _unanswered = True


class ConnectionLost(Unreachable):
    """The request was sent and the connection broke before the whole answer came: it may have been carried out."""

    _unanswered = True


class MalformedAnswer(DingTalkError):
    """A 2xx answer that is not the documented shape (HTML, `{}`, a field missing): an error, never a success;
    temporary (a proxy's page passes), but DingTalk may have carried the request out."""

    def __init__(self, problem: str, request_id: str = "", status: int = 200, code: str = "malformedAnswer") -> None:
        super().__init__(status, code, problem, request_id)


class UnreadableAnswer(MalformedAnswer):
    """An answer too large or undecodable, refused unread: what DingTalk said, and whether it did it, is unknown."""

    _unanswered = True

    def __init__(self, code: str, problem: str) -> None:
        super().__init__(problem, status=0, code=code)


class BotCondition(_Judged, Exception):
    """The bot itself, not DingTalk, stopped a call; `code` names the condition in logs and cards."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OutOfTime(BotCondition):
    """The command's time ran out before a call could be made (or while it waited for the bot's rate-limit slots):
    temporary, as DingTalk being busy is, and never retried within the same budget."""

    _temporary = True

    def __init__(self, waiting_for_slots: bool = False) -> None:
        if waiting_for_slots:
            super().__init__("RateLimitWait", "the command waited too long for rate-limit slots")
        else:
            super().__init__("CommandTimeout", "the command ran out of time")


class NotReady(BotCondition):
    """An ISV app has no suite ticket yet (DingTalk pushes one about every 5 hours, and when the console re-pushes
    it): no organization token to act with."""

    def __init__(self) -> None:
        super().__init__("suiteTicketMissing", "no suite ticket yet")


class OrganizationUnnamed(BotCondition):
    """An ISV message names no organization (DingTalk names it in every ISV callback): no token to act with."""

    def __init__(self) -> None:
        super().__init__("invalidAuthInfo", "the message names no organization")


class NoRobotCode(BotCondition):
    """An ISV message without its robot's code: the robot OpenAPI has nothing to send the card as."""

    def __init__(self) -> None:
        super().__init__("missingRobotCode", "the message names no robotCode to send as")


class UnusableUrl(BotCondition):
    """A URL that cannot be requested (never logged: a sessionWebhook is a credential); it never works."""

    def __init__(self) -> None:
        super().__init__("InvalidURL", "the URL cannot be requested")


class OutOfDescriptors(BotCondition):
    """No connection could be opened: no file descriptor left. Nothing was sent; a moment later one may be free."""

    _temporary = True
    _safe_to_resend = True

    def __init__(self) -> None:
        super().__init__("TooManyOpenFiles", "no file descriptor left to open a connection")


class CardHeldBack(BotCondition):
    """The card step could not be recorded: the card is not sent here, the command is left to be resumed. Never
    caught by a reply's fallback: another route would send the card the step could not record."""

    def __init__(self) -> None:
        super().__init__("CardHeldBack", "the card step cannot be recorded: the card is left to whoever resumes it")


# A call that did not succeed, for DingTalk's reason or the bot's: what a command explains with a card and a reply's
# fallback takes another route for. CardHeldBack is not one: it stops the reply altogether.
Failure = DingTalkError | OutOfTime | NotReady | OrganizationUnnamed | NoRobotCode | UnusableUrl | OutOfDescriptors
FAILURES = (DingTalkError, OutOfTime, NotReady, OrganizationUnnamed, NoRobotCode, UnusableUrl, OutOfDescriptors)


def described(error: Failure | CardHeldBack) -> dict[str, object]:
    """A failure in a log line: its code, and the HTTP status when DingTalk answered (0 when it did not)."""
    return {"code": error.code, "status": error.status if isinstance(error, DingTalkError) else 0}


def retry_delay(attempt: int, throttled: bool) -> float:
    """Exponential backoff with jitter; after a throttle answer at least a second, since QPS limits last a second."""
    ceiling = min(4.0, 0.25 * 2 ** (attempt - 1))
    jitter = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
    return 1.0 + jitter if throttled else ceiling / 2 + jitter / 2


def raise_for_errcode(data: dict[str, Any]) -> None:
    """topapi and the sessionWebhook answer errors with HTTP 200 and an errcode; 0 means success, as a number or
    as the string "0" (a documented example)."""
    errcode = data.get("errcode")
    if errcode is None:
        raise MalformedAnswer("no errcode in the answer")
    if errcode != 0 and errcode != "0":
        raise Refused(
            200,
            _text(errcode) or "odd errcode",
            _text(data.get("errmsg", "")),
            _text(data.get("request_id", "")),
            sub_code=_text(data.get("sub_code", "")),
        )


def request_id_of(data: dict[str, Any]) -> str:
    return _text(data.get("requestid") or data.get("requestId") or data.get("request_id") or "")


def _text(value: Any) -> str:
    """A field of an answer as text: numbers spelled out, anything nested (however deep: str() would recurse past
    Python's limit) left out."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def error_from(response: httpx.Response, data: dict[str, Any]) -> Refused:
    lowered = {key.lower(): value for key, value in data.items()}
    detail = lowered.get("accessdenieddetail")
    scopes: list[Any] = []
    if isinstance(detail, dict):
        scopes = detail.get("requiredScopes") or detail.get("requiredscopes") or []
    return Refused(
        status=response.status_code,
        code=_text(lowered.get("code")) or f"HTTP{response.status_code}",
        message=_text(lowered.get("message", "")),
        request_id=request_id_of(lowered) or response.headers.get("x-acs-request-id", ""),
        required_scopes=tuple(_text(scope) for scope in scopes if _text(scope)),
    )
