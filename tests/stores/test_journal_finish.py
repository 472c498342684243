"""The SQLite journal's finish after a card: it need not land at once (the card step already has), so it waits for
the next write instead of a commit of its own; any other finish is written at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.stores.sqlite import journal as sqlite_journal
from bot.stores.sqlite.journal import SqliteJournal
from tests.helpers_journal import journaled


def _unfinished(path: Path) -> list[str]:
    """What the file holds unfinished, read as another process (a restart) would."""
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT msg_id FROM entries WHERE done_at IS NULL ORDER BY seq")]


async def test_a_finish_after_the_card_step_goes_out_with_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path, remember_seconds=600)
    await journal.open()
    await journal.add(journaled(1))
    assert await journal.mark_card("msg-1", 1.0)
    await journal.finish("msg-1")
    assert _unfinished(path) == ["msg-1"]  # no commit of its own

    await journal.add(journaled(2))  # the next command's write takes it along
    assert _unfinished(path) == ["msg-2"]
    await journal.close()


async def test_a_finish_without_a_card_step_or_with_it_written_back_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path, remember_seconds=600)
    await journal.open()
    for number in (1, 2):
        await journal.add(journaled(number))
    await journal.finish("msg-1")  # answered by no card (a repeat, over the sender's limit)
    await journal.mark_card("msg-2", 1.0)
    await journal.record("msg-2", "card", False)  # DingTalk surely did not take the card
    await journal.finish("msg-2")

    assert _unfinished(path) == []
    await journal.close()


async def test_a_finish_left_waiting_is_written_within_its_time_and_by_a_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_journal, "FINISH_WITHIN_SECONDS", 0.05)
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path, remember_seconds=600)
    await journal.open()
    for number in (1, 2):
        await journal.add(journaled(number))
        await journal.mark_card(f"msg-{number}", 1.0)
    await journal.finish("msg-1")
    await asyncio.sleep(0.3)  # nothing else written meanwhile
    assert _unfinished(path) == ["msg-2"]

    monkeypatch.setattr(sqlite_journal, "FINISH_WITHIN_SECONDS", 60.0)
    await journal.finish("msg-2")
    await journal.close()
    assert _unfinished(path) == []


async def test_a_kill_before_the_finish_landed_leaves_the_entry_answered_for_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path, remember_seconds=600)
    await journal.open()
    await journal.add(journaled(1))
    await journal.mark_card("msg-1", 1.0)
    await journal.finish("msg-1")  # the process dies now: never closed, the finish never written

    again = SqliteJournal(path, remember_seconds=600)
    [entry] = await again.open()
    await again.close()
    assert entry.message.msg_id == "msg-1"
    assert entry.progress == {"card": True}  # the resumption sends no second card (stream/outgoing.py's answered)
