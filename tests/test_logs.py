"""The JSON log formatter: one object per line, secrets redacted."""

from __future__ import annotations

import json
import logging
import time

import pytest

from bot import logs
from bot.logs import JsonFormatter


def record(message: str, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("bot.test", logging.INFO, __file__, 1, message, None, None)
    entry.fields = fields
    return entry


def test_a_line_is_one_json_object_with_the_fields() -> None:
    line = JsonFormatter().format(record("message handled", msg_id="m1", text="a\nb"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "message handled" and entry["msg_id"] == "m1" and entry["level"] == "info"


def test_known_secrets_and_secret_parameters_are_redacted() -> None:
    line = JsonFormatter(["topsecret"]).format(
        record(
            "x",
            url="https://h/p?access_token=tok123&x=1",
            ws="wss://h/connect?ticket=t-1",
            s="topsecret",
            hook="https://oapi.dingtalk.com/robot/sendBySession?session=abc",
        )
    )
    for secret in ("tok123", "t-1", "topsecret", "abc"):
        assert secret not in line
    assert "x=1" in line


def test_prose_that_names_a_secret_parameter_and_short_secrets_are_left_as_written() -> None:
    message = "ticket expired; session timeout; 无效的clientId或者clientSecret; invalid appSecret; Ticket: gateway busy"
    line = JsonFormatter(["id", "secret"]).format(record("stream connection failed", reason=message))
    assert json.loads(line)["reason"] == message and json.loads(line)["event"] == "stream connection failed"
    quoted = JsonFormatter().format(record("x", body="{\"accessToken\": \"tok-9\", 'ticket': 't-2'}"))
    assert "tok-9" not in quoted and "t-2" not in quoted


@pytest.mark.parametrize(
    "text",
    [
        "GET /topapi/v2/user/get?access_token=s3cr3t-value",
        '{"accessToken": "s3cr3t-value"}',
        "wss://gateway/connect?ticket=s3cr3t-value",
        "https://oapi.dingtalk.com/robot/sendBySession?session=s3cr3t-value",
        "appSecret=s3cr3t-value",
        "clientSecret: s3cr3t-value",
        # the spellings of APIs, SDKs and settings
        '{"AccessToken": "s3cr3t-value"}',
        "ACCESS_TOKEN=s3cr3t-value",
        '{"refreshToken": "s3cr3t-value"}',
        "refresh_token=s3cr3t-value",
        '{"suiteTicket": "s3cr3t-value"}',
        "SUITE_TICKET=s3cr3t-value",
        "jsapi_ticket=s3cr3t-value",
        '{"suiteSecret": "s3cr3t-value"}',
        "CLIENT_SECRET=s3cr3t-value",
        "app_secret: s3cr3t-value",
        "ClientSecret=s3cr3t-value",
        "x-acs-dingtalk-access-token: s3cr3t-value",  # the OpenAPI's token header
    ],
)
def test_each_secret_parameter_alone_in_a_line_is_redacted(text: str) -> None:
    line = JsonFormatter().format(record("x", detail=text))
    assert "s3cr3t-value" not in line and "[redacted]" in line


def test_every_secret_parameter_name_holds_a_hint_that_lines_are_searched_for() -> None:
    assert all(any(hint in name.lower() for hint in logs._SECRET_HINTS) for name in logs._SECRET_NAMES)
    assert all(hint == hint.lower() for hint in logs._SECRET_HINTS)  # looked for in the lowered line


def test_the_time_is_the_records_own_to_the_millisecond_across_seconds() -> None:
    formatter = JsonFormatter()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25):
        entry = record("x")
        entry.created, entry.msecs = created, int((created - int(created)) * 1000) + 0.0
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(created))) + f".{int(entry.msecs):03d}Z"
        assert json.loads(formatter.format(entry))["time"] == stamp
