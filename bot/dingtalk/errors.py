"""DingTalk's answers as one exception, and what each kind of error means: temporary, token rejected, final."""

from __future__ import annotations

import random
from typing import Any

import httpx

_THROTTLE_CODES = ("Forbidden.AccessDenied.Qps", "Forbidden.AccessDenied.Qpm", "system.busy", "systemBusy")
# the robot API's own limits (§10.2): per robot, per receiver, per group and per minute; all pass
_ROBOT_THROTTLE_CODES = frozenset(
    {"send.too.fast", "send.byToken.tooFast", "too.many.group", "too.many.people", "toomuch.msg"}
)
_SERVER_ERROR_CODES = frozenset({"internalError", "operationTimeout", "service.timeout"})
QUOTA_EXHAUSTED = "Forbidden.AccessDenied.ApiCountLimitForOrg"  # the organization's monthly calls: not temporary
MALFORMED = "malformedAnswer"  # a 2xx answer that is not the documented shape (HTML, `{}`, a field missing)
FLOW_CONTROLLED = "flowControlledStaffIdList"  # batchSend answered 200 but throttled this receiver
_NEVER_WORKS = frozenset({QUOTA_EXHAUSTED, "InvalidURL"})
TOO_MANY_OPEN_FILES = "TooManyOpenFiles"  # no connection: the process (or the system) is out of file descriptors
_NOT_CONNECTED = frozenset({"ConnectError", TOO_MANY_OPEN_FILES})  # nothing was sent
# the request may have been written and carried out, but its answer timed out, was cut off or could not be read
_UNANSWERED = frozenset({"ReadTimeout", "WriteTimeout", "RemoteProtocolError", "AnswerTooLarge", "DecodingError"})
_TOPAPI_THROTTLE_ERRCODES = ("90002", "90018")
_TOPAPI_BUSY_ERRCODE = "-1"
_TOPAPI_TOKEN_ERRCODES = ("40014", "42001", "40001")


class DingTalkError(Exception):
    """DingTalk answered with an error, or could not be reached (status 0)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        request_id: str = "",
        required_scopes: tuple[str, ...] = (),
        sub_code: str = "",
    ) -> None:
        super().__init__(f"DingTalk error {status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.required_scopes = required_scopes
        self.sub_code = sub_code

    @property
    def is_throttle(self) -> bool:
        if self.code in _NEVER_WORKS:
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
        """Throttling, a server error, an odd answer or no answer: the same call may work a moment later."""
        if self.code in _NEVER_WORKS:
            return False
        if self.status == 0 or self.status >= 500 or self.is_throttle:
            return True
        return self.code in _SERVER_ERROR_CODES or self.code in (MALFORMED, _TOPAPI_BUSY_ERRCODE)

    @property
    def is_safe_to_resend(self) -> bool:
        """The request was surely not carried out: DingTalk answered a server error or a throttle, or no connection
        was made. No answer (a timeout) or an odd one may hide a message that was delivered."""
        return self.status >= 500 or (self.status > 0 and self.is_throttle) or self.code in _NOT_CONNECTED

    @property
    def is_unanswered(self) -> bool:
        """The request may have reached DingTalk and been carried out; no answer (or no readable one) came back."""
        return self.status == 0 and self.code in _UNANSWERED

    @property
    def is_token_rejected(self) -> bool:
        if self.status == 401 or (self.status == 400 and self.code == "InvalidAuthentication"):
            return True
        return (self.code == "88" and self.sub_code == "40014") or self.code in _TOPAPI_TOKEN_ERRCODES


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
        raise malformed("no errcode in the answer")
    if errcode != 0 and errcode != "0":
        raise DingTalkError(
            200,
            _text(errcode) or "odd errcode",
            _text(data.get("errmsg", "")),
            _text(data.get("request_id", "")),
            sub_code=_text(data.get("sub_code", "")),
        )


def malformed(problem: str, request_id: str = "", status: int = 200) -> DingTalkError:
    """A 2xx answer that is not what the API documents: an error (temporary), never a success."""
    return DingTalkError(status, MALFORMED, problem, request_id)


def request_id_of(data: dict[str, Any]) -> str:
    return _text(data.get("requestid") or data.get("requestId") or data.get("request_id") or "")


def _text(value: Any) -> str:
    """A field of an answer as text: numbers spelled out, anything nested (however deep: str() would recurse past
    Python's limit) left out."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def error_from(response: httpx.Response, data: dict[str, Any]) -> DingTalkError:
    lowered = {key.lower(): value for key, value in data.items()}
    detail = lowered.get("accessdenieddetail")
    scopes: list[Any] = []
    if isinstance(detail, dict):
        scopes = detail.get("requiredScopes") or detail.get("requiredscopes") or []
    return DingTalkError(
        status=response.status_code,
        code=_text(lowered.get("code")) or f"HTTP{response.status_code}",
        message=_text(lowered.get("message", "")),
        request_id=request_id_of(lowered) or response.headers.get("x-acs-request-id", ""),
        required_scopes=tuple(_text(scope) for scope in scopes if _text(scope)),
    )
