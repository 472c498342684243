"""The loopback DingTalk assembled: one server that records each request, applies faults, routes or upgrades it."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from bot.sandbox import http_api, stream
from bot.sandbox.faults import Faults
from bot.sandbox.http import RECORDED, Recorded, Route, error_response, json_object, json_response
from bot.sandbox.http_api.robot import REPLY_APIS
from bot.sandbox.isv import IsvEvents
from bot.sandbox.messages import Messages

ROUTES: tuple[Route, ...] = stream.ROUTES + http_api.ROUTES


class Sandbox(Messages, IsvEvents, http_api.HttpApi, Faults):
    """The fake platform. Tests and the demo seed it, push messages into it and read what the bot sent."""

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

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path
        segments = raw_path.partition("?")[0].split("/")
        if request.method == "GET" and segments == ["", "connect"]:
            return await self._websocket(request)
        route = next((route for route in ROUTES if route.matches(request.method, segments)), None)
        api = route.api if route is not None else "unknown"
        body = await request.read()
        now = time.monotonic()
        record = Recorded(api, request.method, raw_path, dict(request.headers), body, now)
        self.requests.append(record)
        request[RECORDED] = record
        if api == "webhook":
            self.webhook_replies.setdefault(raw_path, record)
        await self._notify()
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        answering = asyncio.current_task()
        assert answering is not None
        self._answering.add(answering)
        try:
            response = await self._answer(request, route, segments, body, now)
            if self.close_connections:
                response.force_close()
            if api in REPLY_APIS and not 200 <= response.status < 300:
                self.undelivered.append(record)
            return response
        finally:
            self._answering.discard(answering)
            self.concurrent -= 1

    async def _answer(
        self, request: web.Request, route: Route | None, segments: list[str], body: bytes, now: float
    ) -> web.StreamResponse:
        api = route.api if route is not None else "unknown"
        latency = self.api_latency.get(api, self.latency)
        if api != "gateway" and latency:
            await asyncio.sleep(latency)
        if api not in ("gateway", "webhook") and self._over_qps_limit(api, now):
            self.throttled += 1
            if api == "user/get":
                return json_response(200, {"errcode": 90018, "errmsg": "app qps limit"})
            return error_response(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "app qps limit")
        if self._faults[api]:
            self.carry_out_late(api)
            return await self._faults[api].popleft()(request)
        if route is None:
            return json_response(
                404, {"code": "NotFound", "message": f"no such API: {request.method} {request.raw_path}"}
            )
        return await route.handler(self, request, segments, json_object(body))
