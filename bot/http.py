"""An httpx transport on aiohttp's connection pool that reads each (small JSON) answer whole."""

from __future__ import annotations

import functools

import aiohttp
import httpx
import yarl


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's request and response types on aiohttp's pool.

    httpx's own pool costs more CPU per request the more requests queue (upstream httpx issue 3215). The
    httpx-aiohttp package fixes that but streams every body through several generator layers; DingTalk's answers
    are small JSON, read whole here: about 60 µs less CPU per request, measured (README, "Benchmark")."""

    def __init__(self, connections: int) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # keep every connection alive: reconnecting costs more CPU than a request; DingTalk sets no cookies
        connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session = self._session or self._open()
        limits = request.extensions.get("timeout", {})
        timeout = _client_timeout(limits.get("connect"), limits.get("read"))
        try:
            async with session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # already encoded by httpx: not re-quoted
                data=request.content or None,
                headers=request.headers.multi_items(),
                allow_redirects=False,  # a redirect could carry a token or a reply somewhere unexpected
                timeout=timeout,
            ) as answer:
                content = await answer.read()
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        return httpx.Response(answer.status, headers=answer.raw_headers, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    """One timeout object per pair of limits, reused: most calls share one. A call near the end of its command's
    budget has a limit of its own, so the cache is bounded rather than one entry per such call for ever."""
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read)
