"""parse(), split_targets(), quote_target() and calendar_id_problem(): plain unit tests and properties."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands.parse import (
    MAX_CALENDAR_ID_LENGTH,
    MAX_TARGETS,
    Target,
    calendar_id_problem,
    command_text,
    parse,
    quote_target,
    split_targets,
)
from bot.commands.routes import HANDLERS
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


@pytest.mark.parametrize(
    ("argument", "targets"),
    [
        ("a, b，c、d", [Target("a"), Target("b"), Target("c"), Target("d")]),
        (" a ,, a , ", [Target("a")]),
        ('"a,b"', [Target("a,b", exact=True)]),
        (' "a，b、c" , d', [Target("a，b、c", exact=True), Target("d")]),
        ('"say ""hi"""', [Target('say "hi"', exact=True)]),
        ('" spaced "', [Target(" spaced ", exact=True)]),
        ('"a", a', [Target("a", exact=True), Target("a")]),
        ('"unclosed, x', [Target('"unclosed'), Target("x")]),
        ('"a" b, c', [Target('"a" b'), Target("c")]),
        ('""', []),
        ("", []),
    ],
)
def test_split_targets(argument: str, targets: list[Target]) -> None:
    assert split_targets(argument) == targets


@given(st.text(min_size=1))
def test_a_quoted_id_is_always_read_back_as_exactly_that_id(calendar_id: str) -> None:
    argument = f"{quote_target(calendar_id)}, other"
    assert split_targets(argument) == [Target(calendar_id, exact=True), Target("other")]


@given(st.text(min_size=1).filter(lambda s: s.strip() == s and not s.startswith("@")))
def test_a_button_command_parses_back_to_its_command_and_exact_id(calendar_id: str) -> None:
    for locale in ("en", "zh_CN"):
        command = parse(command_text("unsubscribe", calendar_id, locale), "en")
        assert command.name == "unsubscribe" and command.locale == locale
        assert split_targets(command.argument) == [Target(calendar_id, exact=True)]


def test_splitting_stops_after_one_target_more_than_a_command_may_name() -> None:
    argument = ",".join(f"calendar {n}" for n in range(150_000))
    tracemalloc.start()
    try:
        targets = split_targets(argument)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert targets is None
    assert peak < 20_000  # bytes: a few short strings, never a list of 150,000


def test_repeats_count_towards_the_limit_but_are_acted_on_once() -> None:
    assert split_targets(", ".join(["a"] * MAX_TARGETS)) == [Target("a")]
    assert split_targets(", ".join(["a"] * (MAX_TARGETS + 1))) is None


@pytest.mark.parametrize(
    ("argument", "count"),
    [('"' + 'a""' * 100_000, 1), ('"a, ' * 100_000, None), ('"' * 200_001, 1), ("," * 1_000_000, 0)],
    ids=["never closed", "many unclosed", "only quotes", "only separators"],
)
def test_odd_quoting_is_read_in_one_pass(argument: str, count: int | None) -> None:
    # Each is read once, in a few milliseconds (measured, not asserted): repeats stop at the 21st, unclosed quotes
    # are not re-tried at every length.
    targets = split_targets(argument)
    assert (None if targets is None else len(targets)) == count
