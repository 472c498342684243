"""Every ACK the real `python -m bot` sends is the SDK's AckMessage.to_dict(), for every kind of frame and
for message ids with any characters."""

from __future__ import annotations

import json
from typing import Any

from dingtalk_stream.frames import AckMessage

from tests.helpers import new_user, running_process, started_sandbox

IDS = ["msg-é-中文-✓", 'q"uote\\back', "line\u2028sep", "emoji-😀", "zw\u200bsp"]


def sdk_ack(message_id: str, data: Any, code: int = 200, text: str = "OK") -> dict[str, Any]:
    ack = AckMessage()
    ack.code, ack.message, ack.data = code, text, data
    ack.headers.message_id, ack.headers.content_type = message_id, "application/json"
    return ack.to_dict()


async def test_every_ack_is_the_sdks_whatever_the_frame_and_its_id() -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, {"LOG_LEVEL": "DEBUG"}):
        user = new_user(sandbox)
        for index, message_id in enumerate(IDS):
            ping = {"specVersion": "1.0", "type": "SYSTEM", "data": json.dumps({"opaque": f"o-{index}"})}
            ping["headers"] = {"contentType": "application/json", "messageId": f"p{message_id}", "topic": "ping"}
            event = {"specVersion": "1.0", "type": "EVENT", "data": "{}"}
            event["headers"] = {"messageId": f"e{message_id}", "topic": "*", "eventType": "x", "eventId": "1"}
            odd = {"specVersion": "1.0", "type": "CALLBACK", "data": "{}"}
            odd["headers"] = {"messageId": f"u{message_id}", "topic": "/v1.0/unknown/topic"}
            for frame in (ping, event, odd):
                await sandbox.push_raw(json.dumps(frame))
            await sandbox.push(sandbox.chat("help", user.staff_id), message_id=f"c{message_id}")
            expected = {
                f"p{message_id}": sdk_ack(f"p{message_id}", {"opaque": f"o-{index}"}),
                f"e{message_id}": sdk_ack(f"e{message_id}", {"status": "SUCCESS", "message": "not subscribed"}),
                f"u{message_id}": sdk_ack(f"u{message_id}", {}, AckMessage.STATUS_NOT_IMPLEMENT, "topic not supported"),
                f"c{message_id}": sdk_ack(f"c{message_id}", {"response": None}),
            }
            for key, ack in expected.items():
                got = await sandbox.wait_ack(key)
                assert got == ack and list(got) == list(ack) and list(got["headers"]) == list(ack["headers"]), key
