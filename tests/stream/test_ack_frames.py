"""An ACK frame is the SDK's AckMessage, to the byte of its JSON data, whatever builds it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from dingtalk_stream.frames import AckMessage

from bot.stream.transport import ack_frame


def sdk_ack(message_id: str, data: Any, code: int = AckMessage.STATUS_OK, text: str = "OK") -> dict[str, Any]:
    ack = AckMessage()
    ack.code, ack.message, ack.data = code, text, data
    ack.headers.message_id, ack.headers.content_type = message_id, "application/json"
    return ack.to_dict()


@pytest.mark.parametrize(
    ("data", "code", "text"),
    [
        ({"response": None}, 200, "OK"),
        ({"opaque": "ping-1"}, 200, "OK"),
        ({"status": "LATER", "message": "retry later"}, 200, "OK"),
        ({"response": {"cardUpdateOptions": {"updateCardDataByKey": True}, "text": "已取消订阅 ✅"}}, 200, "OK"),
        ({}, AckMessage.STATUS_NOT_IMPLEMENT, "topic not supported"),
    ],
)
def test_an_ack_is_the_sdks_ack(data: dict[str, Any], code: int, text: str) -> None:
    built = ack_frame("msg-\u00e9-1", None if data == {"response": None} else data, code, text)

    assert orjson.loads(built) == sdk_ack("msg-\u00e9-1", data, code, text)
    assert list(orjson.loads(built)) == list(sdk_ack("msg-\u00e9-1", data, code, text))  # and in its order
