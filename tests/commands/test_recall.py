"""What the bot remembers briefly and within bounds: calendar names per user, each sender's last language."""

from __future__ import annotations

from bot.commands.names import MAX_NAME_LENGTH, MAX_NAMES_PER_LISTING, CalendarNames
from bot.models import Calendar
from bot.stores.languages import LastLanguages


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_listed_name_is_remembered_for_that_user_only_and_only_for_a_while() -> None:
    clock = Clock()
    names = CalendarNames(seconds=60, clock=clock)
    names.remember("union-a", [Calendar("cal-1", "Company Holidays", "subscribed"), Calendar("cal-2", "", "shared")])

    assert names.name("union-a", "cal-1") == "Company Holidays"
    assert names.name("union-a", "cal-2") == "" and names.name("union-b", "cal-1") == ""
    clock.now += 60
    assert names.name("union-a", "cal-1") == ""


def test_names_are_bounded_in_count_length_and_per_listing() -> None:
    names = CalendarNames(capacity=150)
    names.remember("union-a", [Calendar(f"a-{n}", "x" * 500, "subscribed") for n in range(300)])
    names.remember("union-b", [Calendar(f"b-{n}", f"B {n}", "subscribed") for n in range(100)])

    assert names.name("union-a", "a-0") == ""  # pushed out by the newer names
    assert names.name("union-a", "a-99") == "x" * MAX_NAME_LENGTH
    assert names.name("union-a", f"a-{MAX_NAMES_PER_LISTING}") == ""  # beyond what one listing may store
    assert names.name("union-b", "b-99") == "B 99"


def test_the_last_language_is_kept_per_sender_and_bounded() -> None:
    languages = LastLanguages(capacity=2)
    languages.remember("s1", "en")
    languages.remember("s2", "zh_CN")
    languages.remember("s1", "en")  # s1 is now the most recent
    languages.remember("s3", "en")

    assert languages.of("s1", "zh_CN") == "en" and languages.of("s3", "zh_CN") == "en"
    assert languages.of("s2", "en") == "en"  # forgotten: the default
