"""The Stream-mode connection, the only user of dingtalk_stream: frames in, Messages out, ACKs, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus, urlsplit

import orjson
import websockets
from dingtalk_stream.chatbot import ChatbotMessage
from dingtalk_stream.frames import AckMessage, SystemMessage
from dingtalk_stream.version import VERSION_STRING
from websockets.asyncio.client import ClientConnection, connect

from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.models import Event, Message
from bot.stream.gateway import check_endpoint, credentials_rejected, failure_fields

log = logging.getLogger("bot.transport")

CHATBOT_TOPIC: str = ChatbotMessage.TOPIC
SUBSCRIPTIONS = [{"type": "CALLBACK", "topic": CHATBOT_TOPIC}]
CARD_SUBSCRIPTION = {"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"}  # with BOT_CARD_TEMPLATE_ID only
PressHandler = Callable[[dict[str, Any], str], Awaitable[tuple[dict[str, Any], Callable[[], None]]]]
EVENT_SUBSCRIPTION = {"type": "EVENT", "topic": "*"}  # EVENT topics support only "*"; events are chosen in the console
USER_AGENT = f"dingtalk-sdk-python/v{VERSION_STRING}-union dingtalk-calendar-bot"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
STABLE_SECONDS = 60.0  # a connection that lasted this long was healthy: the backoff starts over
OPEN_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 2.0
MAX_FRAME_BYTES = 4 * 2**20
MAX_ID_CHARS = 256  # messageId, type, topic, ping opaque: DingTalk's are far shorter
MAX_NUMBER_CHARS = 64  # a numeric field given as text: longer is no number DingTalk sends
MAX_LENIENT_BYTES = 64 * 1024  # a chatbot message is a few KB; the slow fallback parser reads no more than this
MAX_EXACT_INT = 2**53  # numbers are clamped here: every JSON reader (the journal's included) holds them exactly
BORN_SKEW_MS = 3_600_000  # an event's eventBornTime is believed at most this far in the future


def message_from_callback(data: dict[str, Any], fallback_id: str, per_organization: bool = False) -> Message:
    """Build a Message from a chatbot callback's decoded data, tolerating missing or odd fields."""
    msgtype = _scalar(data.get("msgtype"))
    return Message(
        msg_id=_scalar(data.get("msgId")) or fallback_id,
        text=_text_of(msgtype, data),
        msgtype=msgtype,
        conversation_type=_scalar(data.get("conversationType")),
        conversation_id=_scalar(data.get("conversationId")),
        sender_staff_id=_scalar(data.get("senderStaffId")),
        sender_union_id=_scalar(data.get("senderUnionId")),
        sender_id=_scalar(data.get("senderId")),
        sender_corp_id=_scalar(data.get("senderCorpId")),
        chatbot_corp_id=_scalar(data.get("chatbotCorpId")),
        session_webhook=_scalar(data.get("sessionWebhook")),
        session_webhook_expires_ms=_int(data.get("sessionWebhookExpiredTime")),
        is_in_at_list=bool(data.get("isInAtList")),
        robot_code=_scalar(data.get("robotCode")),
        per_organization=per_organization,
    )


def _text_of(msgtype: str, data: dict[str, Any]) -> str | None:
    if msgtype == "text":
        text = data.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        return content if isinstance(content, str) else None
    if msgtype == "richText":
        content = data.get("content")
        items = content.get("richText") if isinstance(content, dict) else None
        if isinstance(items, list):
            texts = [item["text"] for item in items if isinstance(item, dict) and isinstance(item.get("text"), str)]
            return " ".join(texts) if texts else None
    if msgtype == "audio":  # DingTalk's speech-to-text of a voice message
        content = data.get("content")
        recognition = content.get("recognition") if isinstance(content, dict) else None
        return recognition if isinstance(recognition, str) else None
    return None


def _scalar(value: Any) -> str:
    """A field that should be a string: numbers are spelled out, anything nested (however deep) counts as absent."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _int(value: Any) -> int:
    """A number field read leniently (an int, a float or a numeric string) and clamped to what JSON holds exactly:
    whatever a frame says, the message can still be written down and answered."""
    if isinstance(value, str) and len(value) <= MAX_NUMBER_CHARS:
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return 0
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) else 0
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return max(-MAX_EXACT_INT, min(MAX_EXACT_INT, value))


def _born_ms(value: Any) -> int:
    """eventBornTime in epoch milliseconds; missing, unreadable or further ahead than clocks drift apart: now (its
    arrival), so that one absurd value cannot make the later events, the admin's re-push too, look older."""
    now_ms = int(time.time() * 1000)
    born = _int(value) or now_ms
    return max(0, born if born <= now_ms + BORN_SKEW_MS else now_ms)


NO_RESPONSE = json.dumps({"response": None})  # the data of a chatbot message's ACK, as the SDK writes it


def ack_frame(message_id: str, data: Any = None, code: int = AckMessage.STATUS_OK, text: str = "OK") -> bytes:
    """The SDK's ACK (AckMessage.to_dict(): these headers, its data a JSON string; None: NO_RESPONSE), as the
    UTF-8 of a Text frame. Built here rather than through AckMessage, whose object and stdlib JSON cost 6 times
    more, once a message."""
    return orjson.dumps(
        {
            "code": code,
            "headers": {"contentType": "application/json", "messageId": message_id},
            "message": text,
            "data": NO_RESPONSE if data is None else json.dumps(data),
        }
    )


class StreamClient:
    """Keeps a Stream connection open, ACKs every frame and hands chatbot messages to on_message, awaited before
    their ACK (it writes them down) but never blocking the reading of the next frame.

    When DingTalk announces a `disconnect`, the next connection is opened at once while the old one drains: frames
    still arriving on it are handled until DingTalk closes it (or DRAIN_SECONDS pass). Any error while connecting or
    reading is a failed connection: logged, backed off, retried; run() ends only after stop()."""

    DRAIN_SECONDS = 15.0

    def __init__(
        self,
        dingtalk: DingTalkClient,
        on_message: Callable[[Message], Awaitable[None]],
        config: Config,
        on_event: Callable[[Event], Awaitable[None]] | None = None,
        on_press: PressHandler | None = None,
        *,
        per_organization: bool = False,
    ) -> None:
        self._per_organization = per_organization  # the app type's: msgIds kept apart per organization (ISV)
        self._dingtalk = dingtalk
        self._on_message = on_message
        self._accepting: set[asyncio.Task[None]] = set()
        self._on_event = on_event  # set: EVENT frames are subscribed to and handled before their ACK (an ISV app)
        self._subscriptions = [*SUBSCRIPTIONS, EVENT_SUBSCRIPTION] if on_event else SUBSCRIPTIONS
        self._on_press = on_press  # set: card presses are subscribed to, answered within DingTalk's window
        if on_press is not None:
            self._subscriptions = [*self._subscriptions, CARD_SUBSCRIPTION]
        self._config = config
        self._stopping = False
        self._stopped = asyncio.Event()
        self._sockets: set[ClientConnection] = set()
        self._readers: set[asyncio.Task[bool]] = set()
        self._trying = ""  # the host the current attempt talks to, named when it fails
        self._failing_since: float | None = None  # the first failed attempt since the last good connection
        self._failed_in_a_row = 0
        self.reconnects = 0
        self.failed_connections = 0  # attempts that failed, since start (the heartbeat shows it)

    async def run(self) -> None:
        """Connect, read, reconnect with backoff after a drop or at DingTalk's request; return once stop() ran."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            try:
                socket = await self._open()
                if socket is None:
                    break
                self._failing_since, self._failed_in_a_row = None, 0
                opened = loop.time()
                reader = asyncio.create_task(self._read(socket))
                self._readers.add(reader)
                reader.add_done_callback(self._readers.discard)
                rotated = await reader
            except Exception as error:  # whatever went wrong, the loop goes on: a dead loop is a deaf bot
                failures += 1
                self.failed_connections += 1
                self._failed_in_a_row += 1
                if self._failing_since is None:
                    self._failing_since = loop.time()
                self._report_failure(error, self._failed_in_a_row, loop.time() - self._failing_since)
                await self._sleep(_backoff(failures, self._config.stream_retry_seconds))
                continue
            if self._stopping:
                break
            self.reconnects += 1
            # Only a connection that lasted resets the backoff: a gateway that drops or rotates every connection at
            # once must not be hammered.
            failures = 1 if loop.time() - opened >= STABLE_SECONDS else failures + 1
            if not (rotated and failures == 1):  # a rotation of a lasting connection reconnects at once
                await self._sleep(_backoff(failures, self._config.stream_retry_seconds))

    async def stop(self) -> None:
        """Stop taking new frames: abandon a connection being opened, close every socket and end run()."""
        self._stopping = True
        self._stopped.set()
        await asyncio.gather(*(socket.close() for socket in list(self._sockets)))
        await asyncio.gather(*self._readers, return_exceptions=True)
        await asyncio.gather(*self._accepting, return_exceptions=True)  # every message read is written down

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)

    async def _open(self) -> ClientConnection | None:
        """A new connection, or None when stop() came first (a half-open handshake is abandoned, never used)."""
        attempt = asyncio.ensure_future(self._connect())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not attempt.done():
                attempt.cancel()
        if attempt.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            return None
        socket = attempt.result()
        if self._stopping:
            await socket.close()
            return None
        self._sockets.add(socket)
        return socket

    async def _connect(self) -> ClientConnection:
        self._trying = urlsplit(self._config.api_base).hostname or ""
        endpoint, ticket = await self._dingtalk.open_stream_connection(self._subscriptions, USER_AGENT)
        self._trying = check_endpoint(endpoint, self._config.api_base)  # the ticket goes nowhere else
        socket = await connect(
            f"{endpoint}?ticket={quote_plus(ticket)}",
            ping_interval=self._config.ping_seconds,  # a socket with no pong for ping_timeout more is half-open
            ping_timeout=self._config.ping_seconds,
            proxy=True,  # HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, as for the HTTP calls
            compression=None,  # frames are small; deflating each one costs more CPU than it saves
            max_size=MAX_FRAME_BYTES,
            open_timeout=OPEN_TIMEOUT_SECONDS,
            close_timeout=CLOSE_TIMEOUT_SECONDS,  # shutdown must not wait long on a peer that never answers
        )
        log.info("stream connected", extra={"fields": {"gateway": self._trying}})
        return socket

    def _report_failure(self, error: Exception, attempts: int, failing_seconds: float) -> None:
        log.warning("stream connection failed", extra={"fields": failure_fields(error, self._trying)})
        if credentials_rejected(error):  # at every retry: an admin who looks late still sees it, and since when
            fields = {
                "client_id": self._config.client_id,
                "failing_for_seconds": round(failing_seconds, 1),
                "attempts": attempts,
            }
            log.error(
                "credentials rejected: check DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET", extra={"fields": fields}
            )

    async def _read(self, socket: ClientConnection) -> bool:
        """Read frames until the socket closes; True as soon as DingTalk asks for a new connection, after which a
        background task keeps draining this one."""
        try:
            async for raw in socket:
                if await self._on_frame(socket, raw) == SystemMessage.TOPIC_DISCONNECT:
                    drain = asyncio.create_task(self._drain(socket))
                    self._readers.add(drain)
                    drain.add_done_callback(self._readers.discard)
                    return True
        except websockets.exceptions.ConnectionClosed:
            _report_oversized(socket)
        self._sockets.discard(socket)
        log.info("stream closed")
        return False

    async def _drain(self, socket: ClientConnection) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._read(socket), self.DRAIN_SECONDS)
        await socket.close()
        self._sockets.discard(socket)
        return False

    async def _on_frame(self, socket: ClientConnection, raw: str | bytes) -> str:
        """Handle one frame; its errors stay with it (logged, skipped), only a closed socket ends the reading."""
        frame = _decoded(raw)
        headers = frame.get("headers")
        headers = headers if isinstance(headers, dict) else {}
        kind, topic = _scalar(frame.get("type"))[:MAX_ID_CHARS], _scalar(headers.get("topic"))[:MAX_ID_CHARS]
        if kind == "SYSTEM" and topic == SystemMessage.TOPIC_DISCONNECT:  # documented without a messageId
            log.info("stream disconnect requested by DingTalk")
            return topic
        message_id = _scalar(headers.get("messageId"))
        if not message_id or len(message_id) > MAX_ID_CHARS:  # nothing to ACK with
            fields = {"size": len(raw), "type": kind, "topic": topic}
            log.warning("frame without a messageId ignored", extra={"fields": fields})
            return ""
        try:
            await self._dispatch(socket, kind, topic, message_id, frame.get("data"), headers)
        except websockets.exceptions.ConnectionClosed:
            raise
        except Exception as error:
            fields = {"error": type(error).__name__, "stream_message_id": message_id, "topic": topic}
            log.warning("stream frame skipped", extra={"fields": fields})
        return topic

    async def _dispatch(
        self, socket: ClientConnection, kind: str, topic: str, message_id: str, data: Any, headers: dict[str, Any]
    ) -> None:
        if kind == "CALLBACK" and topic == CHATBOT_TOPIC:
            message = self._chatbot_message(data, message_id)
            if message is None:
                await socket.send(ack_frame(message_id), text=True)
                return
            # written down, then ACKed, then handled; the reader goes on to the next frame meanwhile
            accepting = asyncio.create_task(self._accept_then_ack(socket, message, message_id))
            self._accepting.add(accepting)
            accepting.add_done_callback(self._accepting.discard)
        elif kind == "CALLBACK" and topic == CARD_SUBSCRIPTION["topic"] and self._on_press is not None:
            pressing = asyncio.create_task(self._press_then_ack(socket, data, message_id))
            self._accepting.add(pressing)
            pressing.add_done_callback(self._accepting.discard)
        elif kind == "SYSTEM":
            await socket.send(ack_frame(message_id, _ping_answer(data)), text=True)
        elif kind == "EVENT" and self._on_event is not None:
            await socket.send(ack_frame(message_id, await self._event_status(headers, message_id, data)), text=True)
        elif kind == "EVENT":
            await socket.send(ack_frame(message_id, {"status": "SUCCESS", "message": "not subscribed"}), text=True)
        else:
            await socket.send(
                ack_frame(message_id, {}, AckMessage.STATUS_NOT_IMPLEMENT, "topic not supported"), text=True
            )
            log.warning("unknown frame acknowledged", extra={"fields": {"type": kind, "topic": topic}})

    async def _event_status(self, headers: dict[str, Any], message_id: str, data: Any) -> dict[str, str]:
        """Handle an event (dispatched on `eventType`, whatever the topic); LATER asks DingTalk to push it again."""
        assert self._on_event is not None
        event = Event(
            event_type=_scalar(headers.get("eventType"))[:MAX_ID_CHARS],
            event_id=_scalar(headers.get("eventId"))[:MAX_ID_CHARS] or message_id,
            corp_id=_scalar(headers.get("eventCorpId"))[:MAX_ID_CHARS],
            data=_decoded(data),
            born_ms=_born_ms(headers.get("eventBornTime")),
        )
        try:
            await self._on_event(event)
        except Exception as error:
            fields = {"error": type(error).__name__, "event_type": event.event_type, "event_id": event.event_id}
            log.warning("event not handled, DingTalk will push it again", extra={"fields": fields})
            return {"status": "LATER", "message": "retry later"}
        return {"status": "SUCCESS", "message": "ok"}

    async def _accept_then_ack(self, socket: ClientConnection, message: Message, message_id: str) -> None:
        try:
            await self._on_message(message)
        except Exception:  # accept answers its own failures; this only makes sure the ACK goes out
            log.exception("accepting a message failed", extra={"fields": {"msg_id": message.msg_id}})
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await socket.send(ack_frame(message_id), text=True)

    async def _press_then_ack(self, socket: ClientConnection, data: Any, message_id: str) -> None:
        """A card press: every one ACKed, with the `{"response": …}` wrapper the SDKs send ([PY] handlers.py)."""
        assert self._on_press is not None
        response: dict[str, Any] = {}
        written: Callable[[], None] | None = None
        try:
            response, written = await self._on_press(_decoded(data), message_id)
        except Exception:
            log.exception("card press failed", extra={"fields": {"stream_message_id": message_id}})
        try:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await socket.send(ack_frame(message_id, {"response": response}), text=True)
        finally:
            if written is not None:
                written()

    def _chatbot_message(self, data: Any, message_id: str) -> Message | None:
        decoded = _decoded(data)
        if not decoded:
            log.warning("chatbot frame without data", extra={"fields": {"stream_message_id": message_id}})
            return None
        error = _callback_error(decoded)
        if error is not None:  # e.g. 20001: the organization's monthly push quota is used up; nothing to answer
            fields = {"code": error[0], "message": error[1], "stream_message_id": message_id}
            log.warning("chatbot callback carries a DingTalk error, not answered", extra={"fields": fields})
            return None
        return message_from_callback(decoded, message_id, self._per_organization)


def _decoded(data: Any) -> dict[str, Any]:
    """A frame, or its data (a JSON string holding an object); anything else decodes to {}. orjson refuses nesting
    deeper than 1024 without recursing, and nothing here recurses into what it accepts (the standard library's
    fallback for huge numbers stops at Python's recursion limit)."""
    try:
        value = orjson.loads(data) if isinstance(data, str | bytes) else data
    except ValueError:
        value = _lenient(data)
    return value if isinstance(value, dict) else {}


def _lenient(data: str | bytes) -> Any:
    """What orjson refuses for a number beyond a double (1e400): the standard library reads it as infinity, which
    the fields then clamp. What orjson could not write back (a lone surrogate) stays refused: it could not be
    journaled. Only for a frame of chat-message size: the standard library is several times slower than orjson."""
    if len(data) > MAX_LENIENT_BYTES:
        return {}
    try:
        value = json.loads(data)
        orjson.dumps(value)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value


def _ping_answer(data: Any) -> dict[str, str]:
    """A ping's ACK echoes its opaque token, and only that, when it is a string of sane length."""
    opaque = _decoded(data).get("opaque")
    return {"opaque": opaque} if isinstance(opaque, str) and len(opaque) <= MAX_ID_CHARS else {}


def _callback_error(data: dict[str, Any]) -> tuple[str, str] | None:
    """DingTalk's error code and message when a callback carries an error instead of a message."""
    code = _scalar(data.get("errCode", data.get("errcode")))
    if code in ("", "0") or "text" in data or "content" in data:
        return None
    message = _scalar(data.get("errMsg", data.get("errmsg")))
    return code[:MAX_ID_CHARS], message[:MAX_ID_CHARS]


def _report_oversized(socket: ClientConnection) -> None:
    too_big = socket.protocol.parser_exc
    if isinstance(too_big, websockets.exceptions.PayloadTooBig):
        fields = {"size": too_big.size, "limit": too_big.max_size}
        log.warning("stream frame too big, connection closed", extra={"fields": fields})


def _backoff(failures: int, first: float = FIRST_RETRY_SECONDS) -> float:
    """Exponential backoff with full jitter: the first retry within about `first` seconds, never more than a minute."""
    ceiling = min(MAX_RETRY_SECONDS, first * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
