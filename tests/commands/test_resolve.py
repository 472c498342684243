"""resolve() and is_member(): what a text means among a user's calendars, and who the bot acts for; pure."""

from __future__ import annotations

import pytest

from bot.auth.users import is_member
from bot.commands.resolve import Resolution, resolve
from bot.models import Calendar, Message

PAYROLL = Calendar("cal-payroll", "Payroll deadlines", "subscribed")
SPAM = Calendar("cal-spam", "cal-payroll", "subscribed")
HOLIDAYS = Calendar("cal-holidays", "Company Holidays", "subscribed")
PRIMARY = Calendar("primary-1", "我的日历", "primary")
CALENDARS = [PAYROLL, SPAM, HOLIDAYS, PRIMARY]


@pytest.mark.parametrize(
    ("text", "resolution"),
    [
        ("cal-holidays", Resolution(HOLIDAYS)),
        ("  company HOLIDAYS ", Resolution(HOLIDAYS)),
        ("primary-1", Resolution(PRIMARY)),
        ("我的日历", Resolution()),  # only subscribed calendars are found by name
        ("cal-payroll", Resolution(matches=(PAYROLL, SPAM))),  # one's id, another's name: ask
        ("cal-spam", Resolution(SPAM)),
        ("nothing", Resolution()),
    ],
)
def test_resolve(text: str, resolution: Resolution) -> None:
    assert resolve(text, CALENDARS) == resolution


def test_several_calendars_with_one_name_are_never_guessed_between() -> None:
    east, west = Calendar("e", "Team Offsite", "subscribed"), Calendar("w", "team offsite", "subscribed")
    assert resolve("Team Offsite", [east, west]) == Resolution(matches=(east, west))


def message(staff_id: str, sender_corp: str, bot_corp: str) -> Message:
    return Message("m", "help", "text", "1", "c", staff_id, "", "$:s", sender_corp, bot_corp, "", 0)


@pytest.mark.parametrize(
    ("staff_id", "sender_corp", "bot_corp", "member"),
    [
        ("staff1", "ding1", "ding1", True),
        ("staff1", "", "ding1", True),
        ("staff1", "ding1", "", True),
        ("staff1", "", "", True),
        ("staff1", "ding2", "ding1", False),
        ("", "ding1", "ding1", False),
    ],
)
def test_corp_ids_are_optional_but_two_that_differ_refuse(
    staff_id: str, sender_corp: str, bot_corp: str, member: bool
) -> None:
    assert is_member(message(staff_id, sender_corp, bot_corp)) is member
