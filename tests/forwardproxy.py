"""A loopback HTTP proxy (forwarding and CONNECT tunnels) that records every request that passed through it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024


@dataclass
class ForwardProxy:
    """HTTP_PROXY for tests: `passed` holds ("CONNECT", "host:port") for tunnels and (method, absolute URL) for
    forwarded requests, in arrival order."""

    passed: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstreams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while head := await _read_head(reader):
                method, target, _ = head[0].split(" ", 2)
                self.passed.append((method, target))
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                await self._forward(head, target, reader, writer, upstreams)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            for _, upstream in upstreams.values():
                upstream.close()
            writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _forward(
        self,
        head: list[str],
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstreams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> None:
        """One absolute-form request, sent on to its origin in origin form; the answer copied back whole."""
        parts = urlsplit(target)
        method, _, version = head[0].split(" ", 2)
        body = await reader.readexactly(_content_length(head))
        if parts.netloc not in upstreams:
            upstreams[parts.netloc] = await asyncio.open_connection(parts.hostname, parts.port or 80)
        up_reader, up_writer = upstreams[parts.netloc]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} {version}"] + [line for line in head[1:] if not line.lower().startswith("proxy-")]
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await up_writer.drain()
        answer = await _read_head(up_reader)
        if not answer:
            raise ValueError("the origin closed the connection")
        content = await up_reader.readexactly(_content_length(answer))
        writer.write(("\r\n".join(answer) + "\r\n\r\n").encode("latin-1") + content)
        await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> list[str]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return []
    if len(raw) > MAX_HEAD_BYTES:
        raise ValueError("head too large")
    return raw.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")


def _content_length(head: list[str]) -> int:
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip())
        if name.strip().lower() == "transfer-encoding":
            raise ValueError("chunked bodies are not supported by this test proxy")
    return 0


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()
