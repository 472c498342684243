"""parse() and calendar_id_problem(): plain unit tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import MAX_CALENDAR_ID_LENGTH, calendar_id_problem, parse
from bot.handlers import HANDLERS
from bot.models import Command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unsubscribe cal-holidays", Command("unsubscribe", "en", "cal-holidays")),
        ("  UnSubscribe   cal-holidays  ", Command("unsubscribe", "en", "cal-holidays")),
        (" 取消订阅 cal-holidays", Command("unsubscribe", "zh_CN", "cal-holidays")),
        ("取消订阅cal-holidays", Command("unsubscribe", "zh_CN", "cal-holidays")),
        ("退订 日历一", Command("unsubscribe", "zh_CN", "日历一")),
        ("@CalendarBot unsubscribe x", Command("unsubscribe", "en", "x")),
        ("unsubscribe", Command("unsubscribe", "en", "")),
        ("unsubscribe\tx\ny", Command("unsubscribe", "en", "x\ny")),
        ("help", Command("help", "en")),
        ("HELP me", Command("help", "en", "me")),
        ("帮助", Command("help", "zh_CN")),
        ("？", Command("help", "zh_CN")),
        ("", Command("help", "en")),
        ("   ", Command("help", "en")),
        (None, Command("help", "en", understood=False)),
        ("unsubscribers x", Command("help", "en", understood=False)),
        ("please unsubscribe x", Command("help", "en", understood=False)),
    ],
)
def test_parse(text: str | None, expected: Command) -> None:
    assert parse(text, "en") == expected


def test_text_not_understood_gets_the_default_language() -> None:
    assert parse("bonjour", "zh_CN") == Command("help", "zh_CN", understood=False)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "missing"),
        (".", "dot_segment"),
        ("..", "dot_segment"),
        ("a b", "whitespace"),
        ("a\x00", "bad_characters"),
        ("a\u202e", "bad_characters"),
        ("a\u200b", "bad_characters"),
        ("x" * (MAX_CALENDAR_ID_LENGTH + 1), "too_long"),
        ("x" * MAX_CALENDAR_ID_LENGTH, None),
        ("../x", None),
        ("x?y#z", None),
        ("日历", None),
        ("cnNTbWxxx==", None),
    ],
)
def test_calendar_id_problem(value: str, problem: str | None) -> None:
    assert calendar_id_problem(value) == problem


@given(st.text())
def test_parse_never_fails_and_always_names_a_known_command(text: str) -> None:
    command = parse(text, "zh_CN")
    assert command.name in HANDLERS
    assert command.locale in ("en", "zh_CN")
    assert command.argument == command.argument.strip()


@given(st.text(min_size=1).filter(lambda s: s.strip() == s and not s.startswith("@")))
def test_an_argument_is_passed_through_unchanged(argument: str) -> None:
    assert parse(f"unsubscribe {argument}", "en") == Command("unsubscribe", "en", argument)
