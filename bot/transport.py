"""The Stream-mode connection, the only user of dingtalk_stream: frames in, Messages out, ACKs, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlsplit

import websockets
from dingtalk_stream.chatbot import ChatbotMessage
from dingtalk_stream.frames import AckMessage, SystemMessage
from dingtalk_stream.version import VERSION_STRING
from websockets.asyncio.client import ClientConnection, connect

from bot.dingtalk import DingTalkClient, DingTalkError
from bot.models import Message

log = logging.getLogger("bot.transport")

CHATBOT_TOPIC: str = ChatbotMessage.TOPIC
SUBSCRIPTIONS = [{"type": "CALLBACK", "topic": CHATBOT_TOPIC}]
USER_AGENT = f"dingtalk-sdk-python/v{VERSION_STRING}-union dingtalk-calendar-bot"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
PING_SECONDS = 20.0  # WebSocket pings; no pong within PING_SECONDS more means a half-open socket


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
        sender_corp_id=str(data.get("senderCorpId") or ""),
        chatbot_corp_id=str(data.get("chatbotCorpId") or ""),
        session_webhook=str(data.get("sessionWebhook") or ""),
        session_webhook_expires_ms=_int(data.get("sessionWebhookExpiredTime")),
        is_in_at_list=bool(data.get("isInAtList")),
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
    return json.dumps(ack.to_dict())


class StreamClient:
    """Keeps one Stream connection open, ACKs every frame and hands chatbot messages to on_message."""

    def __init__(self, dingtalk: DingTalkClient, on_message: Callable[[Message], None]) -> None:
        self._dingtalk = dingtalk
        self._on_message = on_message
        self._stopping = False
        self._socket: ClientConnection | None = None
        self._wake = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Connect, read until the connection ends, reconnect with backoff; return once stop() was called."""
        failures = 0
        while not self._stopping:
            try:
                await self._connect_and_read()
                failures = 0
            except (DingTalkError, OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
                failures += 1
                log.warning("stream connection failed", extra={"fields": {"error": type(error).__name__}})
            if self._stopping:
                break
            self.reconnects += 1
            await self._sleep(_backoff(failures))

    async def stop(self) -> None:
        """Stop taking new frames: close the socket and end run()."""
        self._stopping = True
        self._wake.set()
        if self._socket is not None:
            await self._socket.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _connect_and_read(self) -> None:
        endpoint, ticket = await self._dingtalk.open_stream_connection(SUBSCRIPTIONS, USER_AGENT)
        url = f"{endpoint}?ticket={quote_plus(ticket)}"
        async with connect(
            url, ping_interval=PING_SECONDS, ping_timeout=PING_SECONDS, proxy=None, max_size=4 * 2**20
        ) as socket:
            self._socket = socket
            log.info("stream connected", extra={"fields": {"gateway": urlsplit(endpoint).hostname}})
            try:
                async for raw in socket:
                    if await self._on_frame(socket, raw) == SystemMessage.TOPIC_DISCONNECT:
                        break
            finally:
                self._socket = None
        log.info("stream closed")

    async def _on_frame(self, socket: ClientConnection, raw: str | bytes) -> str:
        try:
            frame = json.loads(raw)
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
        value = json.loads(data) if isinstance(data, str | bytes) else data
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _backoff(failures: int) -> float:
    """Exponential backoff with full jitter: the first retry within about a second, never more than a minute."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
