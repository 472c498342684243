"""Messages into the bot: chatbot callback payloads shaped as DingTalk sends them, pushed as CALLBACK frames."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bot.sandbox.ids import base64_id, frame_message_id, opaque
from bot.sandbox.stream import StreamGateway

CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"


class Messages(StreamGateway):
    """What employees say to the bot."""

    def chat(
        self,
        text: str | None,
        staff_id: str = "",
        *,
        group: bool = False,
        voice: bool = False,
        webhook_expires_in: float = 5400.0,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A chatbot callback payload as DingTalk sends it; `text=None` makes a picture message, `voice=True` an audio
        message whose speech-to-text (`content.recognition`) is `text`."""
        now_ms = int(time.time() * 1000)
        # every field and id shaped as in [KB] 0718's examples, so what the bot keeps of a message is its real size
        data: dict[str, Any] = {
            "conversationId": base64_id("cid", 18),
            "conversationType": "2" if group else "1",
            "chatbotCorpId": self.corp_id,
            "chatbotUserId": f"$:LWCP_v1:${opaque(self.client_id, 32)}",
            "msgId": base64_id("msg"),
            "senderNick": "Sandbox User",
            "isAdmin": False,
            "senderStaffId": staff_id,
            "senderId": f"$:LWCP_v1:${opaque(staff_id, 32)}",
            "senderCorpId": self.corp_id,
            "senderPlatform": "Mac",
            "sessionWebhook": f"{self.base_url}/robot/sendBySession?session={uuid.uuid4().hex}",
            "sessionWebhookExpiredTime": now_ms + int(webhook_expires_in * 1000),
            "createAt": now_ms,
            "isInAtList": True,
            "robotCode": self.client_id,
        }
        if group:
            data.update(conversationTitle="测试群", atUsers=[{"dingtalkId": data["chatbotUserId"]}])
        if voice:
            data.update(msgtype="audio", content={"downloadCode": "dc-1", "duration": 2300, "recognition": text})
        elif text is None:
            data.update(msgtype="picture", content={"downloadCode": "dc-1", "pictureDownloadCode": "dc-1"})
        else:
            data.update(msgtype="text", text={"content": f" {text}" if group else text})
        data.update(overrides)
        return data

    def chat_over_quota(self, staff_id: str = "") -> dict[str, Any]:
        """A callback as DingTalk sends it once the organization's monthly push quota is used up: an error code and
        message instead of the message's text or content."""
        data = self.chat(None, staff_id)
        del data["content"], data["msgtype"]
        data.update(errCode=20001, errMsg="机器人推送消息数量已超过本月限额")
        return data

    async def press_card(
        self, out_track_id: str, user_id: str, params: dict[str, str], corp_id: str = "", **press: Any
    ) -> str:
        """`user_id` presses a `request` button of a card: the card callback frame; returns its messageId."""
        message_id, frame = self.cards.press_frame(
            out_track_id, user_id, params, corp_id=corp_id or self.corp_id, app_id=self.client_id, **press
        )
        await self.push_raw(frame)
        return message_id

    async def push(self, data: dict[str, Any], message_id: str = "", socket: int | None = None) -> str:
        """Send a chatbot CALLBACK frame to the bot; returns the frame's messageId."""
        message_id = message_id or frame_message_id()
        self._pushed_at.setdefault(str(data.get("msgId")), len(self.requests))
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {
                "appId": self.client_id,
                "contentType": "application/json",
                "messageId": message_id,
                "time": str(int(time.time() * 1000)),
                "topic": CHATBOT_TOPIC,
            },
            "data": json.dumps(data, ensure_ascii=False),
        }
        await self.push_raw(json.dumps(frame, ensure_ascii=False), socket)
        return message_id
