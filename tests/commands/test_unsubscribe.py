"""What one unsubscribe command shares between its texts: a change (and a listing) stops with the command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from bot.auth.api import DingTalkApi
from bot.commands.names import CalendarNames
from bot.commands.unsubscribe import SenderCalendars
from bot.models import Outcome, Reply


def _waiting_forever() -> tuple[Callable[[], Awaitable[Reply]], asyncio.Event, asyncio.Event]:
    """A change that waits for DingTalk's answer until it is cancelled; (the change, begun, cancelled)."""
    begun, cancelled = asyncio.Event(), asyncio.Event()

    async def change() -> Reply:
        begun.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Reply(Outcome.UNSUBSCRIBED)

    return change, begun, cancelled


async def test_a_stopped_command_stops_its_change_instead_of_leaving_it_running_on_its_own() -> None:
    # the stop's grace ran out (its worker is cancelled): a change left running would call DingTalk after the stop,
    # against a closed client, its failure never read
    calendars = SenderCalendars(cast(DingTalkApi, None), CalendarNames(), "union-1")  # neither is used to leave
    change, begun, cancelled = _waiting_forever()
    command = asyncio.create_task(calendars.leave("cal-1", change))
    await begun.wait()

    command.cancel()

    with pytest.raises(asyncio.CancelledError):
        await command
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_two_texts_meaning_one_calendar_share_its_one_change() -> None:
    calendars = SenderCalendars(cast(DingTalkApi, None), CalendarNames(), "union-1")
    calls = 0

    async def change() -> Reply:
        nonlocal calls
        calls += 1
        return Reply(Outcome.UNSUBSCRIBED)

    replies = await asyncio.gather(calendars.leave("cal-1", change), calendars.leave("cal-1", change))

    assert [reply.outcome for reply in replies] == [Outcome.UNSUBSCRIBED] * 2 and calls == 1


async def test_one_text_changes_in_the_commands_own_task_and_stops_with_it() -> None:
    # one text shares nothing: its change runs in the command's task (no task and shield of its own per change)
    calendars = SenderCalendars(cast(DingTalkApi, None), CalendarNames(), "union-1", shared=False)
    change, begun, cancelled = _waiting_forever()
    tasks: list[asyncio.Task[object] | None] = []

    async def recorded() -> Reply:
        tasks.append(asyncio.current_task())
        return await change()

    command = asyncio.create_task(calendars.leave("cal-1", recorded))
    await begun.wait()
    assert tasks == [command]

    command.cancel()

    with pytest.raises(asyncio.CancelledError):
        await command
    assert cancelled.is_set()


async def test_one_text_leaves_a_calendar_once_however_often_it_is_asked() -> None:
    calendars = SenderCalendars(cast(DingTalkApi, None), CalendarNames(), "union-1", shared=False)
    calls = 0

    async def change() -> Reply:
        nonlocal calls
        calls += 1
        return Reply(Outcome.UNSUBSCRIBED)

    replies = [await calendars.leave("cal-1", change), await calendars.leave("cal-1", change)]

    assert [reply.outcome for reply in replies] == [Outcome.UNSUBSCRIBED] * 2 and calls == 1
