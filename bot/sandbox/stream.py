"""The Stream gateway and WebSocket: tickets, one socket each, frames pushed at random, ACKs, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from bot.sandbox.http import Route, error_response, json_response
from bot.sandbox.state import PlatformState

TICKET_SECONDS = 90


class StreamGateway(PlatformState):
    """The Stream side of the platform: what DingTalk pushes, and what it expects back."""

    async def _api_gateway(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return error_response(401, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = time.monotonic() + TICKET_SECONDS
        self.issued_secrets.append(ticket)
        return json_response(200, {"endpoint": f"ws://{request.host}/connect", "ticket": ticket})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.connect_attempts += 1
        await self._notify()
        if self.handshake_delay:
            with contextlib.suppress(TimeoutError):  # close() releases held handshakes at once
                await asyncio.wait_for(self._closing.wait(), self.handshake_delay)
        if request.transport is None or request.transport.is_closing():  # the client gave up waiting
            return web.Response(status=408)
        ticket = request.query.get("ticket", "")
        if self._tickets.pop(ticket, 0) < time.monotonic():  # one connection per ticket, within 90 s
            return web.Response(status=403, text="invalid ticket")
        silent = self.silent_connections > 0
        self.silent_connections -= silent
        socket = web.WebSocketResponse(autoping=not silent)
        await socket.prepare(request)
        if silent:
            self._silent.add(socket)
        self._sockets.append(socket)
        self.connected_at.append(time.monotonic())
        await self._notify()
        try:
            await self._greet(socket)
            async for frame in socket:
                if frame.type == WSMsgType.TEXT and socket not in self._silent:
                    ack = json.loads(frame.data)
                    self.acks[ack["headers"]["messageId"]] = ack
                    self.cards.acked(ack)
                    await self._notify()
        finally:
            self._sockets.remove(socket)
            self._silent.discard(socket)
            await self._notify()
        return socket

    async def _greet(self, socket: web.WebSocketResponse) -> None:
        if self.connect_fault == "disconnect":
            await self._disconnect(socket)
        elif self.connect_fault == "drop":
            await socket.close()
        elif self.connect_fault == "oversized":  # over the bot's 4 MiB frame limit: it closes the socket
            with contextlib.suppress(ConnectionError):
                await socket.send_str(json.dumps({"type": "SYSTEM", "headers": {}, "data": "x" * (5 * 2**20)}))

    async def push_raw(self, text: str, socket: int | None = None) -> None:
        """Send a text frame on the connection at index `socket` (oldest first) or, as DingTalk does, on one chosen
        at random."""
        await self.wait_connected()
        chosen = self._sockets[socket] if socket is not None else random.choice(self._sockets)  # noqa: S311
        await chosen.send_str(text)

    async def push_system(self, topic: str, data: dict[str, Any], socket: int | None = None) -> str:
        """A SYSTEM frame (ping) with a messageId to ACK; `disconnect` goes to disconnect()."""
        message_id = f"system-{uuid.uuid4().hex}"
        headers = {"contentType": "application/json", "messageId": message_id, "topic": topic}
        await self.push_raw(json.dumps({"type": "SYSTEM", "headers": headers, "data": json.dumps(data)}), socket)
        return message_id

    async def disconnect(self, socket: int = -1) -> None:
        """Ask the bot to reconnect, as DingTalk does: a SYSTEM `disconnect` frame without a messageId (no ACK
        expected), then the socket is closed `disconnect_close_seconds` later."""
        await self.wait_connected()
        await self._disconnect(self._sockets[socket])

    async def _disconnect(self, socket: web.WebSocketResponse) -> None:
        headers = {"contentType": "application/json", "time": str(int(time.time() * 1000)), "topic": "disconnect"}
        data = json.dumps({"reason": "connection is expired"})
        await socket.send_str(json.dumps({"specVersion": "1.0", "type": "SYSTEM", "headers": headers, "data": data}))
        closer = asyncio.create_task(_close_later(socket, self.disconnect_close_seconds))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def drop_connections(self) -> None:
        """Close every Stream socket from the server side, as a DingTalk gateway restart does."""
        for socket in list(self._sockets):
            await socket.close()


async def _close_later(socket: web.WebSocketResponse, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await socket.close()


# The WebSocket itself (GET /connect) is not a route: the platform hands it to StreamGateway._websocket unrecorded
ROUTES = (Route("POST", "/v1.0/gateway/connections/open", "gateway", StreamGateway._api_gateway),)
