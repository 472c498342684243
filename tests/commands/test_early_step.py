"""The step of a quoted id's change, written while the sender is looked up: what each outcome of the two gives."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bot.commands.base import CommandError
from bot.commands.progress import StepHeldBack
from bot.commands.unsubscribe import _identify_while
from bot.models import Outcome, Reply

LOOKUP_FAILED = CommandError(Reply(Outcome.APP_LACKS_PERMISSION))


class Sender:
    """As much of a Context as the lookup needs: its unionId, or its failure, after `seconds`."""

    def __init__(self, failure: Exception | None = None, seconds: float = 0.01) -> None:
        self.failure = failure
        self.seconds = seconds

    async def identify(self) -> str:
        await asyncio.sleep(self.seconds)
        if self.failure is not None:
            raise self.failure
        return "union"


async def held_back() -> None:
    raise StepHeldBack


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What the event loop reports (a task's exception never retrieved among them) while the block runs."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        yield reported
    finally:
        gc.collect()
        loop.set_exception_handler(previous)


@pytest.mark.parametrize("failure", [None, LOOKUP_FAILED])
async def test_a_step_held_back_surfaces_once_the_lookup_is_done_whatever_it_answered(failure: Exception) -> None:
    sender = Sender(failure)
    with loop_errors() as reported, pytest.raises(StepHeldBack):
        await _identify_while(sender, asyncio.create_task(held_back()))
    assert reported == []


async def test_a_failed_lookup_waits_for_the_step_it_began_and_says_its_own_failure() -> None:
    landing = asyncio.create_task(asyncio.sleep(0.05))
    with pytest.raises(CommandError) as failed:
        await _identify_while(Sender(LOOKUP_FAILED), landing)
    assert failed.value is LOOKUP_FAILED
    assert landing.done() and not landing.cancelled()


async def test_the_lookup_waits_for_the_step_before_answering() -> None:
    landing = asyncio.create_task(asyncio.sleep(0.05))
    assert await _identify_while(Sender(), landing) == "union"
    assert landing.done()


@pytest.mark.parametrize("step", ["writing", "held back"])
async def test_a_command_stopped_during_the_lookup_stops_its_step_and_reports_nothing(step: str) -> None:
    with loop_errors() as reported:
        landing = asyncio.create_task(asyncio.sleep(10) if step == "writing" else held_back())
        command = asyncio.create_task(_identify_while(Sender(seconds=10), landing))
        await asyncio.sleep(0.01)
        command.cancel()
        with pytest.raises(asyncio.CancelledError):
            await command
        await asyncio.sleep(0)
        assert landing.done()
        assert landing.cancelled() == (step == "writing")
        del landing, command
    assert reported == []
