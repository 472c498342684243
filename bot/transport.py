"""The Stream-mode connection, the only user of dingtalk_stream: frames in, Messages out, ACKs, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlsplit

import orjson
import websockets
from dingtalk_stream.chatbot import ChatbotMessage
from dingtalk_stream.frames import AckMessage, SystemMessage
from dingtalk_stream.version import VERSION_STRING
from websockets.asyncio.client import ClientConnection, connect

from bot.dingtalk import DingTalkClient
from bot.errors import DingTalkError
from bot.models import Message

log = logging.getLogger("bot.transport")

CHATBOT_TOPIC: str = ChatbotMessage.TOPIC
SUBSCRIPTIONS = [{"type": "CALLBACK", "topic": CHATBOT_TOPIC}]
USER_AGENT = f"dingtalk-sdk-python/v{VERSION_STRING}-union dingtalk-calendar-bot"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0


def message_from_callback(data: dict[str, Any], fallback_id: str) -> Message:
    """Build a Message from a chatbot callback's decoded data, tolerating missing or odd fields."""
    msgtype = str(data.get("msgtype") or "")
    return Message(
        msg_id=str(data.get("msgId") or fallback_id),
        text=_text_of(msgtype, data),
        msgtype=msgtype,
        conversation_type=str(data.get("conversationType") or ""),
        conversation_id=str(data.get("conversationId") or ""),
        sender_staff_id=str(data.get("senderStaffId") or ""),
        sender_union_id=str(data.get("senderUnionId") or ""),
        sender_id=str(data.get("senderId") or ""),
        sender_corp_id=str(data.get("senderCorpId") or ""),
        chatbot_corp_id=str(data.get("chatbotCorpId") or ""),
        session_webhook=str(data.get("sessionWebhook") or ""),
        session_webhook_expires_ms=_int(data.get("sessionWebhookExpiredTime")),
        is_in_at_list=bool(data.get("isInAtList")),
        robot_code=str(data.get("robotCode") or ""),
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
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def ack_frame(message_id: str, data: Any, code: int = AckMessage.STATUS_OK, text: str = "OK") -> str:
    ack = AckMessage()
    ack.code = code
    ack.headers.message_id = message_id
    ack.headers.content_type = "application/json"
    ack.message = text
    ack.data = data
    frame = ack.to_dict()  # the SDK's ACK shape; its data is a JSON string
    return orjson.dumps(frame).decode()


class StreamClient:
    """Keeps a Stream connection open, ACKs every frame and hands chatbot messages to on_message.

    When DingTalk announces a `disconnect`, the next connection is opened at once while the old one drains: frames
    still arriving on it are handled until DingTalk closes it (or DRAIN_SECONDS pass)."""

    DRAIN_SECONDS = 15.0

    def __init__(self, dingtalk: DingTalkClient, on_message: Callable[[Message], None], ping_seconds: float) -> None:
        self._dingtalk = dingtalk
        self._on_message = on_message
        self._ping_seconds = ping_seconds
        self._stopping = False
        self._wake = asyncio.Event()
        self._sockets: set[ClientConnection] = set()
        self._readers: set[asyncio.Task[bool]] = set()
        self.reconnects = 0

    async def run(self) -> None:
        """Connect, read, reconnect with backoff after a drop or at DingTalk's request; return once stop() ran."""
        failures = 0
        while not self._stopping:
            try:
                socket = await self._connect()
            except (DingTalkError, OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
                failures += 1
                log.warning("stream connection failed", extra={"fields": {"error": type(error).__name__}})
                await self._sleep(_backoff(failures))
                continue
            failures = 0
            reader = asyncio.create_task(self._read(socket))
            self._readers.add(reader)
            reader.add_done_callback(self._readers.discard)
            rotated = await reader
            if self._stopping:
                break
            self.reconnects += 1
            if not rotated:
                await self._sleep(_backoff(0))  # dropped: retry within about a second

    async def stop(self) -> None:
        """Stop taking new frames: close every socket and end run()."""
        self._stopping = True
        self._wake.set()
        for socket in list(self._sockets):
            await socket.close()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _connect(self) -> ClientConnection:
        endpoint, ticket = await self._dingtalk.open_stream_connection(SUBSCRIPTIONS, USER_AGENT)
        socket = await connect(
            f"{endpoint}?ticket={quote_plus(ticket)}",
            ping_interval=self._ping_seconds,  # a socket with no pong for ping_timeout more is half-open: closed
            ping_timeout=self._ping_seconds,
            proxy=None,
            compression=None,  # frames are small; deflating each one costs more CPU than it saves
            max_size=4 * 2**20,
        )
        self._sockets.add(socket)
        log.info("stream connected", extra={"fields": {"gateway": urlsplit(endpoint).hostname}})
        return socket

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
            pass
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
        try:
            frame = orjson.loads(raw)
            headers = frame["headers"]
            message_id = str(headers["messageId"])
        except (ValueError, TypeError, KeyError):
            log.warning("frame without a messageId ignored", extra={"fields": {"size": len(raw)}})
            return ""
        kind, topic = frame.get("type"), str(headers.get("topic", ""))
        if kind == "CALLBACK" and topic == CHATBOT_TOPIC:
            await socket.send(ack_frame(message_id, {"response": None}))  # ACK first, handle after
            self._accept_chatbot_message(frame.get("data"), message_id)
        elif kind == "SYSTEM" and topic == SystemMessage.TOPIC_DISCONNECT:
            log.info("stream disconnect requested by DingTalk")
        elif kind == "SYSTEM":
            await socket.send(ack_frame(message_id, _decoded(frame.get("data"))))  # ping: echo its opaque
        elif kind == "EVENT":
            await socket.send(ack_frame(message_id, {"status": "SUCCESS", "message": "not subscribed"}))
        else:
            await socket.send(ack_frame(message_id, {}, AckMessage.STATUS_NOT_IMPLEMENT, "topic not supported"))
            log.warning("unknown frame acknowledged", extra={"fields": {"type": str(kind), "topic": topic}})
        return topic

    def _accept_chatbot_message(self, data: Any, message_id: str) -> None:
        decoded = _decoded(data)
        if not decoded:
            log.warning("chatbot frame without data", extra={"fields": {"stream_message_id": message_id}})
            return
        self._on_message(message_from_callback(decoded, message_id))


def _decoded(data: Any) -> dict[str, Any]:
    """A frame's data is a JSON string holding an object; anything else decodes to {}."""
    try:
        value = orjson.loads(data) if isinstance(data, str | bytes) else data
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _backoff(failures: int) -> float:
    """Exponential backoff with full jitter: the first retry within about a second, never more than a minute."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
