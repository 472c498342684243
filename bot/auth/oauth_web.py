"""The HTTP side of user-token mode (aiohttp's server on $PORT): DingTalk's OAuth redirect and a health check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import jinja2
from aiohttp import web

from bot.auth.connect import Connector
from bot.auth.web_guard import (
    HEADER_SECONDS,
    MAX_FIELD,
    MAX_HEADERS,
    MAX_LINE,
    ConnectionGuard,
    Handler,
    connection_cap,
    server_logger,
)
from bot.models import Message
from bot.template_files import TEMPLATES_DIR, templates_in_memory

CALLBACK_PATH = "/oauth/callback"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the platform routes $PORT to it
MAX_CODE_LENGTH = 512
PAGE_HEADERS = {
    "Cache-Control": "no-store",  # the page answers a one-time link
    "Referrer-Policy": "no-referrer",  # the code and state in this URL go nowhere else
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
STATUS = {"connected": 200, "failed": 502}  # every refusal is 400; a failure of the bot's own (its store) 503
log = logging.getLogger("bot.oauth_web")
_PAGES = jinja2.Environment(
    loader=templates_in_memory(TEMPLATES_DIR / "pages"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    auto_reload=False,
)


def page_locale(accept_language: str, default: str) -> str:
    """The browser's language when it is one the pages have, else the bot's."""
    first = accept_language.split(",")[0].strip().lower()
    if first.startswith("zh"):
        return "zh_CN"
    if first.startswith("en"):
        return "en"
    return default


class OAuthServer:
    """Serves the OAuth redirect: the browser gets a short page once the pending command went to `run`. The port is
    guarded (web_guard): a flood of idle connections cannot take the descriptors the chat needs."""

    def __init__(self, connector: Connector, port: int, locale: str, run: Callable[[Message], Awaitable[None]]) -> None:
        self._connector = connector
        self._port = port
        self._locale = locale
        self._run = run
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.guard: ConnectionGuard | None = None

    async def start(self) -> None:
        self.guard = ConnectionGuard(connection_cap())
        app = web.Application(client_max_size=2**16, middlewares=[self.guard.middleware, self._error_page])
        app.router.add_get(CALLBACK_PATH, self._callback)
        app.router.add_get("/", self._health)
        app.on_response_prepare.append(_security_headers)
        self._runner = web.AppRunner(
            app,
            access_log=None,  # its log line holds code and state
            handle_signals=False,
            keepalive_timeout=HEADER_SECONDS,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
            logger=server_logger(),
        )
        await self._runner.setup()
        self.guard.factory = self._runner.server
        self._listener = await asyncio.get_running_loop().create_server(
            self.guard, ALL_INTERFACES, self._port, reuse_address=True
        )
        fields = {"port": self._port, "path": CALLBACK_PATH, "max_connections": self.guard.cap}
        log.info("serving the OAuth redirect", extra={"fields": fields})

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    @web.middleware
    async def _error_page(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Whatever fails (the store full or unreachable), the browser gets the bot's own page in its language."""
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as error:
            fields = {"problem": type(error).__name__, "path": request.path}
            log.error("the OAuth redirect failed: the browser was asked to try again", extra={"fields": fields})
            browser = page_locale(request.headers.get("Accept-Language", ""), self._locale)
            return _page("unavailable", browser, 503)

    async def _callback(self, request: web.Request) -> web.Response:
        code = request.query.get("authCode") or request.query.get("code") or ""
        state = request.query.get("state", "")
        browser = page_locale(request.headers.get("Accept-Language", ""), self._locale)
        completed = await self._connector.complete(code[:MAX_CODE_LENGTH], state, browser)
        if completed.pending is not None:  # journaled before the page says so: a restart still answers it
            await self._run(completed.pending)
        return _page(completed.page, completed.locale, STATUS.get(completed.page, 400))


def _page(page: str, locale: str, status: int) -> web.Response:
    html = _PAGES.get_template(f"{locale}/{page}.html.j2").render()
    return web.Response(status=status, text=html, content_type="text/html")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer of the port, pages, errors and the health check alike."""
    response.headers.update(PAGE_HEADERS)
