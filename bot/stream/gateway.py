"""The Stream gateway's answers judged: which WebSocket endpoints may get the ticket, and why a connection failed."""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from websockets.exceptions import InvalidStatus, InvalidURI, ProxyError

from bot.dingtalk.errors import DingTalkError, OutOfDescriptors, Refused, TimedOut, Unreachable, UnreadableAnswer

DINGTALK_DOMAINS = ("dingtalk.com", "dingtalk.io")
_WEBSOCKET_SCHEME = {"http": "ws", "https": "wss"}
_REJECTED_CREDENTIALS = {(401, "authFailed"), (400, "invalidClientIdOrSecret"), (401, "invalidClientIdOrSecret")}
_MAX_HOST_CHARS = 253
_MAX_REASON_CHARS = 200
_MAX_CAUSES = 8
# first match wins: a proxy that is refused is "proxy", not "refused"; a TLS failure is a connection error too
_WHY: tuple[tuple[str, type[BaseException] | tuple[type[BaseException], ...]], ...] = (
    ("proxy", (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError, ProxyError)),
    ("dns", (aiohttp.ClientConnectorDNSError, socket.gaierror)),
    ("tls", (aiohttp.ClientSSLError, ssl.SSLError)),
    ("refused", ConnectionRefusedError),
    ("timeout", (TimeoutError, httpx.TimeoutException)),
)


class EndpointRefused(Exception):
    """The gateway named a WebSocket endpoint the ticket must not be sent to."""

    def __init__(self, reason: str, host: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host


def check_endpoint(endpoint: str, api_base: str) -> str:
    """The endpoint's host if the ticket may go there: `wss://` on a DingTalk host, or the configured API host with
    its own scheme's WebSocket equivalent (the sandbox serves ws:// on its HTTP host). Raises EndpointRefused."""
    try:
        parts, api = urlsplit(endpoint), urlsplit(api_base)
        host, port = parts.hostname or "", parts.port
        host.encode("idna")  # refuses empty and over-long labels before any resolver sees them
    except (ValueError, UnicodeError):
        raise EndpointRefused("unparseable endpoint", "") from None
    if not host or len(host) > _MAX_HOST_CHARS or parts.username is not None or parts.password is not None:
        raise EndpointRefused("unusable endpoint", host[:_MAX_HOST_CHARS])
    on_dingtalk = any(host == domain or host.endswith("." + domain) for domain in DINGTALK_DOMAINS)
    if parts.scheme == "wss" and on_dingtalk:
        return host
    if parts.scheme == _WEBSOCKET_SCHEME.get(api.scheme) and (host, port) == (api.hostname, api.port):
        return host
    raise EndpointRefused("not a DingTalk host", host)


def credentials_rejected(error: BaseException) -> bool:
    """DingTalk refused the client id or secret (not a passing outage)."""
    return isinstance(error, Refused) and (error.status, error.code) in _REJECTED_CREDENTIALS


def failure_fields(error: BaseException, host: str) -> dict[str, Any]:
    """What an admin needs to know about a failed connection attempt to `host`: never the secret or the ticket."""
    if isinstance(error, EndpointRefused):
        return {"error": "endpoint refused", "reason": error.reason, "host": error.host}
    if isinstance(error, UnreadableAnswer):  # it answered: too much, or undecodable (bot.http's own words)
        return {"error": error.code, "message": error.message[:_MAX_REASON_CHARS], "host": host}
    if isinstance(error, Unreachable | OutOfDescriptors):
        kind = "timeout" if isinstance(error, TimedOut) else "unreachable"
        return {"error": kind, "why": unreachable_why(error), "host": host}
    if isinstance(error, DingTalkError):  # refused, or an answer not of the documented shape
        return {
            "error": "DingTalkError",
            "status": error.status,
            "code": error.code[:_MAX_REASON_CHARS],
            "message": error.message[:_MAX_REASON_CHARS],
            "host": host,
        }
    if isinstance(error, TimeoutError):
        return {"error": "timeout", "why": "timeout", "host": host}
    if isinstance(error, OSError | ProxyError):  # refused, reset, no route, name not known, TLS, the proxy
        return {"error": "unreachable", "why": unreachable_why(error), "host": host, "reason": _short(error)}
    if isinstance(error, InvalidStatus):
        return {"error": "InvalidStatus", "code": error.response.status_code, "host": host}
    if isinstance(error, InvalidURI):  # its text is the URL, ticket included
        return {"error": "InvalidURI", "host": host}
    return {"error": type(error).__name__, "reason": _short(error), "host": host}


def unreachable_why(error: BaseException) -> str:
    """Why nothing came back, in an admin's words: dns, refused, tls, timeout, proxy, or network (reset, no route).
    The bot's own DingTalkError hides the library's exception as its context (raised `from None`): read it there."""
    seen: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(seen) < _MAX_CAUSES:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for kind, types in _WHY:
        if any(isinstance(each, types) for each in seen):
            return kind
    return "network"


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:_MAX_REASON_CHARS]
