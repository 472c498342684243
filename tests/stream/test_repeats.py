"""Repeats: the one answer to "is this a repeat?", over a real SQLite journal and the in-memory admission."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from bot.models import Message, Verdict
from bot.stores.admission import MemoryAdmission
from bot.stores.journal import CARD, Entry
from bot.stores.sqlite.journal import SqliteJournal
from bot.stream.repeats import Repeats


def message(msg_id: str, corp: str = "corp") -> Message:
    return Message(msg_id, "help", "text", "1", "cid", "staff", "", "sender", corp, corp, "", 0)


@pytest_asyncio.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(tmp_path / "journal.sqlite3", 600)
    await journal.open()
    yield journal
    await journal.close()


async def test_a_second_delivery_is_a_repeat_and_counted(journal: SqliteJournal) -> None:
    repeats = Repeats(journal, MemoryAdmission(10))

    assert await repeats.delivered(message("m1"))
    assert not await repeats.delivered(message("m1"))
    assert await repeats.delivered(message("m2"))
    assert repeats.dropped == 1


async def test_a_repeat_is_recognised_by_a_later_process_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    first = SqliteJournal(path, 600)
    await first.open()
    assert await Repeats(first, MemoryAdmission(10)).delivered(message("m1"))
    await first.finish("m1")
    await first.close()

    second = SqliteJournal(path, 600)
    await second.open()
    later = Repeats(second, MemoryAdmission(10))
    assert not await later.delivered(message("m1"))  # this process never saw it: the journal did
    await second.close()


async def test_a_message_this_process_queued_is_a_repeat_when_resumed(journal: SqliteJournal) -> None:
    repeats = Repeats(journal, MemoryAdmission(10))

    assert await repeats.delivered(message("m1"))
    assert not repeats.resumed(message("m1"))
    assert repeats.resumed(message("m2"))
    assert repeats.dropped == 1


async def test_admission_claims_a_message_once(journal: SqliteJournal) -> None:
    repeats = Repeats(journal, MemoryAdmission(10))

    assert await repeats.admit(message("m1"), "corp:staff", None) == Verdict.ALLOW
    assert await repeats.admit(message("m1"), "corp:staff", None) == Verdict.TAKEN
    assert repeats.dropped == 1


async def test_a_resumed_message_whose_card_was_on_its_way_is_a_repeat(journal: SqliteJournal) -> None:
    repeats = Repeats(journal, MemoryAdmission(1))
    begun = Entry(message("m1"), 1, {})
    answered = Entry(message("m2"), 1, {CARD: True})

    assert await repeats.admit(begun.message, "corp:staff", begun) == Verdict.ALLOW
    assert await repeats.admit(answered.message, "corp:staff", answered) == Verdict.TAKEN
    # a resumed message was admitted by the handling it resumes: the sender's one command is not spent again
    assert await repeats.admit(message("m3"), "corp:staff", None) == Verdict.ALLOW


async def test_the_same_msg_id_in_two_organizations_is_two_messages(journal: SqliteJournal) -> None:
    repeats = Repeats(journal, MemoryAdmission(10))
    in_a = Message("m1", "help", "text", "1", "c", "s", "", "x", "a", "a", "", 0, per_organization=True)
    in_b = Message("m1", "help", "text", "1", "c", "s", "", "x", "b", "b", "", 0, per_organization=True)

    assert await repeats.delivered(in_a) and await repeats.delivered(in_b)
    assert not await repeats.delivered(in_b)
