"""An httpx transport on aiohttp's pool that reads each (small JSON) answer whole, capped in size and in time."""

from __future__ import annotations

import errno
import functools
import zlib
from typing import Any

import aiohttp
import httpx
import yarl

from bot.dingtalk.proxies import proxy_for

# DingTalk's answers are a few KB of JSON. Anything bigger (after decompression) is refused, so a misbehaving server
# or a gzip bomb cannot take the process's memory.
MAX_ANSWER_BYTES = 2 * 2**20
_DECOMPRESSED = ("gzip", "deflate")
_HEADERS_OF_THE_WIRE = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


class TooManyOpenFiles(httpx.ConnectError):
    """No connection was made: the process (EMFILE) or the system (ENFILE) has no file descriptor left."""


class TlsFailed(httpx.ConnectError):
    """The TLS handshake failed (a certificate not trusted, no protocol in common): nothing was sent."""


class ProxyUnreachable(httpx.ConnectError):
    """No connection to the HTTPS proxy could be made: nothing was sent."""


class AnswerTooLarge(httpx.DecodingError):
    """The answer is over MAX_ANSWER_BYTES; it was not read further."""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's request and response types on aiohttp's pool. Its responses carry the whole body, already decoded,
    as their stream (response.stream; response.read() works too, through httpx's decoders).

    httpx's own pool costs more CPU per request the more requests queue (upstream httpx issue 3215). The
    httpx-aiohttp package fixes that but streams every body through several generator layers; DingTalk's answers
    are small JSON, read whole here: about 60 µs less CPU per request, measured (docs/design.md, "Decisions").

    The request's timeout (the smallest value in its "timeout" extension) bounds the whole exchange, body included:
    a server that trickles its answer cannot hold a call longer than that."""

    def __init__(self, connections: int) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # keep every connection alive: reconnecting costs more CPU than a request; DingTalk sets no cookies
        connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,  # decompressed here, with a cap
            headers={"Accept-Encoding": ", ".join(_DECOMPRESSED)},
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session = self._session or self._open()
        timeout = _client_timeout_of(*request.extensions.get("timeout", {}).values())
        proxy, proxy_auth = proxy_for(request.url.scheme, request.url.host)
        try:
            async with session.request(
                request.method,
                _target(request.url),
                data=_body(request),
                headers=_as_text(tuple(request.headers.raw)),
                allow_redirects=False,  # a redirect could carry a token or a reply somewhere unexpected
                proxy=proxy,
                proxy_auth=proxy_auth,
                timeout=timeout,  # aiohttp's total covers connecting, sending and reading the whole body
            ) as answer:
                content, rewritten = await _read_capped(answer, request)
        except aiohttp.ConnectionTimeoutError as error:  # no connection within the time: nothing was sent
            raise httpx.ConnectError(str(error), request=request) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=request) from error
        except aiohttp.ClientConnectorError as error:  # no connection was made: nothing was sent
            if error.os_error.errno in _OUT_OF_DESCRIPTORS:
                raise TooManyOpenFiles(str(error), request=request) from error
            if isinstance(error, aiohttp.ClientSSLError):
                raise TlsFailed(str(error), request=request) from error
            if isinstance(error, aiohttp.ClientProxyConnectionError):
                raise ProxyUnreachable(str(error), request=request) from error
            raise httpx.ConnectError(str(error), request=request) from error
        except aiohttp.ClientError as error:  # sent, maybe carried out, but the answer was lost
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        headers = answer.raw_headers
        if rewritten:  # the content is plain bytes now: httpx must not decode it again
            headers = tuple((key, value) for key, value in headers if key.lower() not in _HEADERS_OF_THE_WIRE)
        return _response(answer.status, _response_headers(headers), content, request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def request(
    method: str, url: httpx.URL, headers: httpx.Headers, content: bytes, extensions: dict[str, Any]
) -> httpx.Request:
    """httpx.Request(method, url, headers=headers, stream=httpx.ByteStream(content), extensions=extensions), the
    attributes its constructor sets set here (17 → 8 k instructions a request): the URL and headers are httpx's
    already, so none of its checks and conversions applies. The headers are copied, as httpx copies them (a token's
    are shared between requests); the extensions are the caller's own new dict. The tests compare the two."""
    built = httpx.Request.__new__(httpx.Request)
    built.method = method.upper()
    built.url = url
    built.headers = httpx.Headers(headers)
    built.extensions = extensions
    built.stream = httpx.ByteStream(content)
    return built


def _response(status: int, headers: httpx.Headers, content: bytes, request: httpx.Request) -> httpx.Response:
    """httpx.Response(status, headers=headers, stream=httpx.ByteStream(content), request=request), the attributes its
    constructor sets set here (21 → 15 k instructions an answer; the headers are this answer's own, not copied). The
    body, already whole and decoded, is the response's stream: httpx's content decoders have nothing left to do, and
    it is read in one piece (1.8 µs against 11 for content=, which encodes and decodes it again). See the tests."""
    built = httpx.Response.__new__(httpx.Response)
    built.status_code = status
    built.headers = headers
    built._request = request
    built.next_request = None
    built.extensions = {}
    built.history = []
    built.is_closed = False
    built.is_stream_consumed = False
    built.default_encoding = "utf-8"
    built.stream = httpx.ByteStream(content)
    built._num_bytes_downloaded = 0
    return built


def _target(url: httpx.URL) -> yarl.URL:
    """The URL for aiohttp, as httpx encoded it (not quoted again): made from httpx's parts of it (0.6 µs) instead of
    its text parsed again (2.8 µs: httpx's str() and yarl's parser). A URL with a user or password (aiohttp makes
    them its basic auth), a fragment or an empty query goes through the text as before; the tests compare both."""
    scheme, userinfo, host, port, path, query, fragment = url._uri_reference  # httpx's parts (a NamedTuple)
    if userinfo or fragment is not None or query == "" or not host:
        return yarl.URL(str(url), encoded=True)
    authority = f"[{host}]" if ":" in host else host  # an IPv6 address, kept by httpx without its brackets
    if port is not None:
        authority = f"{authority}:{port}"
    return yarl.URL.build(scheme=scheme, authority=authority, path=path, query_string=query or "", encoded=True)


def _response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> httpx.Headers:
    """httpx's headers of the answer's raw pairs, kept as httpx keeps them (name, lowered name, value: bytes all) but
    built at once: httpx checks and encodes each name and value again in Python (2 µs an answer); see the tests."""
    headers = httpx.Headers(_NO_HEADERS)  # from Headers: httpx copies them (None is checked against Mapping, an ABC)
    headers._list = [(key, key.lower(), value) for key, value in raw]
    return headers


_NO_HEADERS = httpx.Headers()


def header(response: httpx.Response, lowered: bytes) -> bytes | None:
    """The first value of a response header by its lowered name, read from httpx's own list of them (as
    _response_headers builds it): no list of pairs made, no name lowered again; see the tests."""
    for _, key, value in response.headers._list:
        if key == lowered:
            return value
    return None


def _body(request: httpx.Request) -> bytes | None:
    """The body as built: the one piece of DingTalkClient's ByteStream as it is (request.read() would put it into a
    new stream again, 1 µs a call); any other stream read through httpx."""
    stream = request.stream
    content = b"".join(stream) if isinstance(stream, httpx.ByteStream) else request.read()
    return content or None


async def _read_capped(answer: aiohttp.ClientResponse, request: httpx.Request) -> tuple[bytes, bool]:
    """The whole body, decompressed, or AnswerTooLarge as soon as it passes MAX_ANSWER_BYTES; and whether it was
    decompressed or unchunked here (so its wire headers no longer apply)."""
    length = answer.content_length
    if length is not None and length > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(f"the answer announces {length} bytes", request=request)
    encoding = answer.headers.get("Content-Encoding")
    if encoding is None and length is not None:  # the usual answer: aiohttp reads exactly `length` bytes
        return await answer.read(), False
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("identity", "", *_DECOMPRESSED):
        raise httpx.DecodingError(f"unsupported content encoding {encoding[:20]!r}", request=request)
    inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in _DECOMPRESSED else None  # gzip or zlib header
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in answer.content.iter_any():
            if inflate is not None:  # never inflate more than the cap allows: a bomb stops here
                chunk = inflate.decompress(chunk, MAX_ANSWER_BYTES + 1 - size)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(f"the answer is over {MAX_ANSWER_BYTES} bytes", request=request)
            parts.append(chunk)
        if inflate is not None:
            rest = inflate.flush()
            if size + len(rest) > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(f"the answer is over {MAX_ANSWER_BYTES} bytes", request=request)
            parts.append(rest)
    except zlib.error as error:
        raise httpx.DecodingError(f"the answer does not decompress: {error}", request=request) from None
    return b"".join(parts), True


@functools.lru_cache(maxsize=256)
def _as_text(raw: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[str, str], ...]:
    """A request's headers as aiohttp takes them, decoded as httpx decodes them, once per set of headers: requests
    share a few (JSON, and a token's), and httpx works out their encoding again for every request."""
    return tuple(httpx.Headers(list(raw)).multi_items())


CONNECT_SHARE = 0.9  # of a call's time, the most its connection may take to open


@functools.lru_cache(maxsize=64)
def _client_timeout_of(*limits: float | None) -> aiohttp.ClientTimeout:
    """The timeout of a request's "timeout" extension (its smallest value bounds the whole exchange), looked up by its
    values: the client hands the same few (http._timeout), and a list and min() per call cost more than the lookup."""
    given = [value for value in limits if value is not None]
    return _client_timeout(min(given) if given else None)


@functools.lru_cache(maxsize=64)
def _client_timeout(total: float | None) -> aiohttp.ClientTimeout:
    """One timeout object per limit, reused: most calls share one. A call near the end of its command's budget has a
    limit of its own, so the cache is bounded rather than one entry per such call for ever."""
    # the connect phase (a pool slot, then the handshake) ends a little before the total, so that a connection never
    # made is told apart (ConnectionTimeoutError: nothing sent, safe to send again) from an answer that never came
    connect = total * CONNECT_SHARE if total is not None else None
    return aiohttp.ClientTimeout(total=total, connect=connect)
