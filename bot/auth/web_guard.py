"""Limits for the OAuth port: a capped number of connections, each closed unless its request arrives in time."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

HEADER_SECONDS = 5.0  # a connection's request line and headers must arrive within this (then again after each answer)
MAX_CONNECTIONS = 128  # open at once on the port; a browser needs one for the redirect
DESCRIPTOR_SHARE = 4  # at most 1/4 of the process's descriptors (RLIMIT_NOFILE): the rest stay the chat's
MAX_LINE = 4_096  # request line (the code and state are well under this)
MAX_FIELD = 4_096  # one header
MAX_HEADERS = 32
log = logging.getLogger("bot.web_guard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BAD_REQUESTS_EVENT = "OAuth port: requests that are not HTTP refused"


class BadRequests(logging.Filter):
    """The web server's own error lines (a request it cannot parse: what a scanner or a TLS hello on $PORT sends)
    become one warning a minute with a count: no traceback, none of what was sent (a request line may hold an
    authorization code), and nobody paged for each of an attacker's requests."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self._logged_at = -60.0

    def filter(self, record: logging.LogRecord) -> bool:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at < 60:
            return False
        self._logged_at = now
        problem = type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1] else ""
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args, record.exc_info, record.exc_text = BAD_REQUESTS_EVENT, (), None, None
        record.fields = {"refused": self.refused, "problem": problem}
        return True


def server_logger() -> logging.Logger:
    """The logger the OAuth port's web server reports its errors to (BadRequests filters it)."""
    server = logging.getLogger("bot.web_guard.server")
    if not server.filters:
        server.addFilter(BadRequests())
    return server


def connection_cap() -> int:
    """How many connections the port may hold: MAX_CONNECTIONS, fewer when the descriptor limit is low."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // DESCRIPTOR_SHARE))


class ConnectionGuard:
    """Wraps the web server's protocol factory: beyond the cap a new connection is closed at once (its descriptor
    freed); a connection without a request under way for HEADER_SECONDS is aborted."""

    def __init__(self, cap: int) -> None:
        self.factory: Callable[[], asyncio.Protocol] | None = None  # the web server's, once it is set up
        self.cap = cap
        self.open: dict[asyncio.BaseTransport, _Guarded] = {}
        self.refused = 0
        self._refusals_logged = 0.0

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.cap or self.factory is None:
            self.refused += 1
            return _Refused(self)
        return _Guarded(self, self.factory())

    def log_refusal(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._refusals_logged >= 60:  # one line a minute while a flood lasts
            self._refusals_logged = now
            log.warning(
                "OAuth port full: new connections closed", extra={"fields": {"cap": self.cap, "refused": self.refused}}
            )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """While a request is handled, its connection is not timed out; after it, the clock starts again."""
        guarded = self.open.get(request.transport) if request.transport is not None else None
        if guarded is not None:
            guarded.busy(True)
        try:
            return await handler(request)
        finally:
            if guarded is not None:
                guarded.busy(False)


class _Refused(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]
        self._guard.log_refusal()


class _Guarded(asyncio.Protocol):
    """The server's own protocol, counted and timed."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._guard.open[transport] = self
        self.busy(False)
        self._inner.connection_made(transport)

    def busy(self, handling: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if handling else asyncio.get_running_loop().call_later(HEADER_SECONDS, self._expire)

    def _expire(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._guard.open.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
