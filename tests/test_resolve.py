"""resolve() and is_member(): what a text means among a user's calendars, and who the bot acts for; pure."""

from __future__ import annotations

import pytest

from bot.commands import Target
from bot.models import Calendar, Message
from bot.resolve import Resolution, resolve
from bot.users import is_member

PAYROLL = Calendar("cal-payroll", "Payroll deadlines", "subscribed")
SPAM = Calendar("cal-spam", "cal-payroll", "subscribed")
HOLIDAYS = Calendar("cal-holidays", "Company Holidays", "subscribed")
PRIMARY = Calendar("primary-1", "我的日历", "primary")
CALENDARS = [PAYROLL, SPAM, HOLIDAYS, PRIMARY]


@pytest.mark.parametrize(
    ("target", "resolution"),
    [
        (Target("cal-holidays"), Resolution(HOLIDAYS)),
        (Target("  company HOLIDAYS "), Resolution(HOLIDAYS)),
        (Target("primary-1"), Resolution(PRIMARY)),
        (Target("我的日历"), Resolution()),  # only subscribed calendars are found by name
        (Target("cal-payroll"), Resolution(matches=(PAYROLL, SPAM))),  # one's id, another's name: ask
        (Target("cal-payroll", exact=True), Resolution(PAYROLL)),  # a button's quoted id
        (Target("Company Holidays", exact=True), Resolution(HOLIDAYS)),
        (Target("nothing"), Resolution()),
    ],
)
def test_resolve(target: Target, resolution: Resolution) -> None:
    assert resolve(target, CALENDARS) == resolution


def test_several_calendars_with_one_name_are_never_guessed_between() -> None:
    east, west = Calendar("e", "Team Offsite", "subscribed"), Calendar("w", "team offsite", "subscribed")
    assert resolve(Target("Team Offsite"), [east, west]) == Resolution(matches=(east, west))


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
