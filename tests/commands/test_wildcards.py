"""Wildcard patterns: `*` and `?` only, everything else literal, case-insensitive, CJK included, never slow."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands.wildcards import is_pattern, matches, select
from bot.models import Calendar


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("Team*", "team offsite", True),
        ("team*", "TEAMS", True),
        ("*", "", True),
        ("*", "anything at all", True),
        ("a*b", "ab", True),
        ("a*b", "a", False),
        ("a*a", "a", False),
        ("ab*b", "ab", False),
        ("a*b*c", "abbc", True),
        ("*a*b*", "xxaxxbxx", True),
        ("*a*b", "xxaxxbxxc", False),
        ("?", "字", True),
        ("??", "字", False),
        ("团队*", "团队建设", True),
        ("＊周会", "团队周会", True),
        ("团队？", "团队A", True),
        ("a.b", "axb", False),
        ("a[b]", "a[b]", True),
        ("(x|y)+", "(x|y)+", True),
        ("x|y", "x", False),
        ("\\d", "\\d", True),
        ("\\d", "1", False),
        ("Straße*", "STRASSE 1", True),
        ("  Team*  ", " Team A ", True),
    ],
)
def test_matches(pattern: str, text: str, expected: bool) -> None:
    assert matches(pattern, text) is expected


@given(st.text(max_size=30))
def test_a_pattern_without_wildcards_matches_exactly_its_own_text_ignoring_case(text: str) -> None:
    if not is_pattern(text):
        assert matches(text, text.upper())
        assert not matches(text, text + "x")


@given(st.text(max_size=20), st.text(max_size=20))
def test_a_star_around_any_text_finds_it_anywhere(before: str, needle: str) -> None:
    if not is_pattern(needle):
        assert matches(f"*{needle}*", f"{before}{needle}{before}") or needle != needle.strip()


def test_a_hostile_pattern_against_a_hostile_name_stays_fast() -> None:
    started = time.perf_counter()
    for _ in range(100):
        matches("*" + "a*" * 60 + "b", "a" * 5_000)
        matches("*" + "?" * 120 + "b*", "a" * 5_000)
    assert time.perf_counter() - started < 1.0


def test_select_looks_at_names_and_ids_in_the_order_given() -> None:
    calendars = [Calendar("cal-team", "Holidays", "subscribed"), Calendar("cal-2", "Team Lunch", "subscribed")]
    assert select("*team*", calendars) == calendars
    assert select("holidays", calendars) == calendars[:1]
