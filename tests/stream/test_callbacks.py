"""Callbacks as DingTalk may write them: absurd numbers read leniently, journaled and answered by the real bot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.sandbox.http import Recorded
from bot.stream.transport import CHATBOT_TOPIC, message_from_callback
from tests.helpers import card, new_calendar, new_user, running_bot, started_sandbox

ENV = {"BOT_RETRY_PAUSE_SCALE": "0.01", "BOT_STREAM_RETRY_SECONDS": "0.1", "BOT_COMMAND_TIMEOUT": "5"}


def _title(reply: Recorded) -> str:
    """The card's title, sent to the sessionWebhook or (an expired one) through the robot OpenAPI."""
    body = reply.json()
    return str(json.loads(body["msgParam"])["title"] if "msgParam" in body else card(reply)["title"])


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("sessionWebhookExpiredTime", "1e30"),
        ("sessionWebhookExpiredTime", "-1e30"),
        ("sessionWebhookExpiredTime", '"123456789012345678901234567890"'),
        ("sessionWebhookExpiredTime", "123456789012345678901234567890"),
        ("sessionWebhookExpiredTime", "1e400"),
        ("sessionWebhookExpiredTime", '"-1e400"'),
        ("createAt", "1e30"),
        ("createAt", "-1e400"),
        ("createAt", '"123456789012345678901234567890"'),
    ],
)
async def test_a_message_with_absurd_numbers_is_journaled_and_answered(tmp_path: Path, field: str, raw: str) -> None:
    async with started_sandbox() as sandbox, running_bot(sandbox, {**ENV, "BOT_STATE_DIR": str(tmp_path)}) as bot:
        user = new_user(sandbox)
        data = sandbox.chat(f"unsubscribe {new_calendar(sandbox, user)}", user.staff_id, **{field: "@NUMBER@"})
        # written by hand: these numbers as DingTalk's JSON would carry them, which Python's json cannot all write
        text = json.dumps(data, ensure_ascii=False).replace('"@NUMBER@"', raw)
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {"contentType": "application/json", "messageId": "absurd-1", "topic": CHATBOT_TOPIC},
            "data": text,
        }
        await sandbox.push_raw(json.dumps(frame))
        await sandbox.wait_ack("absurd-1")
        await sandbox.wait_reply(data)
        await bot.wait_log("message handled", msg_id=data["msgId"])

        assert [_title(reply) for reply in sandbox.delivered(data)] == ["✅ Unsubscribed"]
        assert not bot.logs("accepting a message failed")
    # read once the bot stopped: a finish after the card goes out with the journal's next write (at most a second)
    with sqlite3.connect(tmp_path / "journal.sqlite3") as journal:
        [(done_at,)] = journal.execute("SELECT done_at FROM entries WHERE msg_id = ?", (data["msgId"],))
    assert done_at is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e30, 2**53),
        (-1e30, -(2**53)),
        ("123456789012345678901234567890", 2**53),
        (float("inf"), 0),
        (float("nan"), 0),
        ("1700000000000", 1_700_000_000_000),
        ("1.7e12", 1_700_000_000_000),
        (" 12 ", 12),
        ("9" * 65, 0),
        (True, 0),
        ([1], 0),
        ("soon", 0),
    ],
)
def test_a_numeric_field_is_read_leniently_and_clamped(value: object, expected: int) -> None:
    data = {"msgId": "m1", "msgtype": "text", "text": {"content": "help"}, "sessionWebhookExpiredTime": value}
    assert message_from_callback(data, "fallback").session_webhook_expires_ms == expected
