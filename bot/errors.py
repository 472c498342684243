"""DingTalk's answers as one exception, and what each kind of error means: temporary, token rejected, final."""

from __future__ import annotations

import random
from typing import Any

import httpx

_THROTTLE_CODES = ("Forbidden.AccessDenied.Qps", "Forbidden.AccessDenied.Qpm", "system.busy", "systemBusy")
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
        return self.status == 429 or self.code.startswith(_THROTTLE_CODES) or self.code in _TOPAPI_THROTTLE_ERRCODES

    @property
    def is_temporary(self) -> bool:
        """Throttling, a server error or no answer: the same call may work a moment later."""
        return self.status == 0 or self.status >= 500 or self.is_throttle or self.code == _TOPAPI_BUSY_ERRCODE

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
    """topapi answers errors with HTTP 200 and an errcode."""
    errcode = data.get("errcode", 0)
    if errcode != 0:
        raise DingTalkError(
            200,
            str(errcode),
            str(data.get("errmsg", "")),
            str(data.get("request_id", "")),
            sub_code=str(data.get("sub_code", "")),
        )


def request_id_of(data: dict[str, Any]) -> str:
    return str(data.get("requestid") or data.get("requestId") or data.get("request_id") or "")


def error_from(response: httpx.Response, data: dict[str, Any]) -> DingTalkError:
    lowered = {key.lower(): value for key, value in data.items()}
    detail = lowered.get("accessdenieddetail")
    scopes: list[Any] = []
    if isinstance(detail, dict):
        scopes = detail.get("requiredScopes") or detail.get("requiredscopes") or []
    return DingTalkError(
        status=response.status_code,
        code=str(lowered.get("code") or f"HTTP{response.status_code}"),
        message=str(lowered.get("message", "")),
        request_id=request_id_of(lowered) or response.headers.get("x-acs-request-id", ""),
        required_scopes=tuple(str(scope) for scope in scopes),
    )
