"""The few-seconds calendar list per sender: kept, expired, dropped on the bot's changes, apart per organization;
and through the real process, a typed command right after a list lists no second time."""

from __future__ import annotations

from bot.dingtalk.recent_calendars import MAX_LISTED, RecentCalendars
from bot.models import Calendar
from bot.sandbox.platform import Sandbox
from tests.helpers import calendar_calls, card, converse, new_calendar, new_user

HOLIDAYS = Calendar("cal-holidays", "Company Holidays", "subscribed")
LUNCH = Calendar("cal-lunch", "Lunch", "subscribed")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kept(lists: RecentCalendars, organization: str, union_id: str, calendars: list[Calendar]) -> None:
    lists.put(organization, union_id, calendars, lists.begin(organization, union_id))


def test_a_list_is_kept_for_its_seconds_then_forgotten() -> None:
    clock = Clock()
    lists = RecentCalendars(seconds=5, clock=clock)
    kept(lists, "", "u1", [HOLIDAYS, LUNCH])

    clock.now += 4.9
    assert lists.get("", "u1") == [HOLIDAYS, LUNCH]
    clock.now += 0.1
    assert lists.get("", "u1") is None


def test_a_change_the_bot_makes_drops_the_list() -> None:
    lists = RecentCalendars(seconds=5, clock=Clock())
    kept(lists, "", "u1", [HOLIDAYS, LUNCH])
    kept(lists, "", "u2", [LUNCH])

    lists.drop("", "u1")

    assert lists.get("", "u1") is None
    assert lists.get("", "u2") == [LUNCH]  # only that sender's list
    kept(lists, "", "u1", [LUNCH])  # listed again after the change: kept again
    assert lists.get("", "u1") == [LUNCH]


def test_a_listing_under_way_while_a_change_is_made_is_not_kept() -> None:
    lists = RecentCalendars(seconds=5, clock=Clock())
    stamp = lists.begin("", "u1")  # the listing is sent
    lists.drop("", "u1")  # meanwhile another command of the sender unsubscribes
    lists.put("", "u1", [HOLIDAYS, LUNCH], stamp)  # the answer may predate that change

    assert lists.get("", "u1") is None


def test_a_listing_that_took_longer_than_the_seconds_is_not_kept() -> None:
    clock = Clock()
    lists = RecentCalendars(seconds=5, clock=clock)
    stamp = lists.begin("", "u1")
    lists.drop("", "u1")
    clock.now += 6  # long enough for the change's trace to be forgotten
    kept(lists, "", "u9", [LUNCH])  # (what forgets it)
    lists.put("", "u1", [HOLIDAYS], stamp)

    assert lists.get("", "u1") is None


def test_lists_are_kept_apart_per_organization() -> None:
    lists = RecentCalendars(seconds=5, clock=Clock())
    kept(lists, "corp-a", "u1", [HOLIDAYS])
    kept(lists, "corp-b", "u1", [LUNCH])

    assert lists.get("corp-a", "u1") == [HOLIDAYS]
    assert lists.get("corp-b", "u1") == [LUNCH]
    assert lists.get("", "u1") is None
    lists.drop("corp-a", "u1")
    assert lists.get("corp-a", "u1") is None and lists.get("corp-b", "u1") == [LUNCH]


def test_memory_is_bounded_in_count_time_and_list_length() -> None:
    clock = Clock()
    lists = RecentCalendars(seconds=5, capacity=3, clock=clock)
    for number in range(5):
        kept(lists, "", f"u{number}", [HOLIDAYS])
    assert len(lists) == 3 and lists.get("", "u0") is None and lists.get("", "u4") == [HOLIDAYS]

    clock.now += 5
    kept(lists, "", "new", [LUNCH])
    assert len(lists) == 1  # the expired ones went as soon as anything was stored

    kept(lists, "", "long", [Calendar(f"c{n}", "x", "subscribed") for n in range(MAX_LISTED + 1)])
    assert lists.get("", "long") is None


async def test_a_typed_command_right_after_a_list_lists_no_second_time(bot: object, sandbox: Sandbox) -> None:
    user = new_user(sandbox)
    holidays = new_calendar(sandbox, user, "Company Holidays")
    new_calendar(sandbox, user, "Lunch")

    await converse(sandbox, sandbox.chat("list", user.staff_id))
    _, reply = await converse(sandbox, sandbox.chat("unsubscribe company holidays", user.staff_id))

    assert card(reply)["title"] == "✅ Unsubscribed" and holidays not in sandbox.subscriptions[user.union_id]
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe"]


async def test_after_the_bot_changed_a_calendar_the_next_typed_command_lists_again(
    bot: object, sandbox: Sandbox
) -> None:
    user = new_user(sandbox)
    new_calendar(sandbox, user, "Company Holidays")
    new_calendar(sandbox, user, "Lunch")

    await converse(sandbox, sandbox.chat("unsubscribe company holidays", user.staff_id))
    _, reply = await converse(sandbox, sandbox.chat("unsubscribe company holidays", user.staff_id))

    # the second command sees the calendar gone (listed anew), not the list from before the change
    assert card(reply)["title"] == "❓ No calendar called that"
    assert [call.api for call in calendar_calls(sandbox, user.union_id)] == ["calendars", "unsubscribe", "calendars"]
