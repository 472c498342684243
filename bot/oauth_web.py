"""The HTTP side of user-token mode (aiohttp's server on $PORT): DingTalk's OAuth redirect and a health check."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import jinja2
from aiohttp import web

from bot.cards import TEMPLATES_DIR
from bot.connect import Connector
from bot.models import Message

CALLBACK_PATH = "/oauth/callback"
MAX_CODE_LENGTH = 512
PAGE_HEADERS = {
    "Cache-Control": "no-store",  # the page answers a one-time link
    "Referrer-Policy": "no-referrer",  # the code and state in this URL go nowhere else
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
STATUS = {"connected": 200, "failed": 502}  # every refusal is 400
log = logging.getLogger("bot.oauth_web")
_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "pages"),
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
    """Serves the OAuth redirect: the browser gets a short page once the pending command went to `run`."""

    def __init__(self, connector: Connector, port: int, locale: str, run: Callable[[Message], Awaitable[None]]) -> None:
        self._connector = connector
        self._port = port
        self._locale = locale
        self._run = run
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=2**16)
        app.router.add_get(CALLBACK_PATH, self._callback)
        app.router.add_get("/", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)  # its log line holds code and state
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self._port).start()  # noqa: S104 - the platform routes to it
        log.info("serving the OAuth redirect", extra={"fields": {"port": self._port, "path": CALLBACK_PATH}})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _callback(self, request: web.Request) -> web.Response:
        code = request.query.get("authCode") or request.query.get("code") or ""
        state = request.query.get("state", "")
        browser = page_locale(request.headers.get("Accept-Language", ""), self._locale)
        completed = await self._connector.complete(code[:MAX_CODE_LENGTH], state, browser)
        if completed.pending is not None:  # journaled before the page says so: a restart still answers it
            await self._run(completed.pending)
        html = _PAGES.get_template(f"{completed.locale}/{completed.page}.html.j2").render()
        status = STATUS.get(completed.page, 400)
        return web.Response(status=status, text=html, content_type="text/html", headers=PAGE_HEADERS)
