"""Answers for Sandbox.answer_next: how a misbehaving server or proxy answers (not JSON, huge, gzip, late…)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from typing import Any

from aiohttp import web

from bot.sandbox.http import Responder, json_response


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Responder:
    """Any status with any JSON body (a string body is sent as a JSON string)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = json_response(status, body)
        response.headers.update(headers or {})
        return response

    return respond


def raw_answer(status: int, text: str, content_type: str = "text/html") -> Responder:
    """A body that is not JSON at all, as a proxy or an IP ban page answers."""

    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text, content_type=content_type)

    return respond


def huge_answer(size: int) -> Responder:
    """200 with `size` bytes of JSON-looking text, streamed without a Content-Length, never held in memory whole."""
    chunk = b" " * 2**16

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the bot stops reading: the connection goes
            for _ in range(size // len(chunk)):
                await response.write(chunk)
        return response

    return respond


def gzip_answer(body: Any) -> Responder:
    """200 with this JSON body compressed, `Content-Encoding: gzip`, as a CDN in front of an API may answer."""
    compressed = gzip.compress(json.dumps(body).encode())

    async def respond(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(status=200, body=compressed, headers=headers)

    return respond


def gzip_bomb(size: int) -> Responder:
    """200 with `Content-Encoding: gzip`: a small body that inflates to `size` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * 2**20
    body = b"".join(compressor.compress(block) for _ in range(size // len(block))) + compressor.flush()

    async def respond(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(body)
        return response

    return respond


def trickle_answer(body: Any, interval: float) -> Responder:
    """200 with a JSON body sent one byte every `interval` seconds: each read is quick, the whole answer is not."""
    content = json.dumps(body).encode()

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(content)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for byte in range(len(content)):
                await response.write(content[byte : byte + 1])
                await asyncio.sleep(interval)
        return response

    return respond


def cut_off_answer(body: Any) -> Responder:
    """200 with this JSON body, of which only the headers and the first half are sent before the connection is
    closed: the request was received and carried out, its answer lost on the way."""
    content = json.dumps(body).encode()

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(content)
        await response.prepare(request)
        await response.write(content[: len(content) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    return respond


def late_answer(seconds: float, body: Any) -> Responder:
    """200 with this JSON body, after `seconds`: a slow server (what it was asked has been done already)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return json_response(200, body)

    return respond
