"""The journal's contract, run against every implementation (SQLite, Redis Stream), and the progress it keeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bot.commands.progress import Progress, reply_from_json, reply_to_json
from bot.models import Action, Message, Outcome, Reply
from bot.stores.journal import Entry, Journal, SqliteJournal
from bot.stores.redis.journal import RedisJournal
from bot.stores.redis.limits import connect
from tests.redisserver import RedisServer

Opener = Callable[[], Journal]


def message(number: int) -> Message:
    return Message(
        msg_id=f"msg-{number}",
        text=f"unsubscribe cal-{number}",
        msgtype="text",
        conversation_type="1",
        conversation_id="cid",
        sender_staff_id="staff",
        sender_union_id="",
        sender_id="sender",
        sender_corp_id="corp",
        chatbot_corp_id="corp",
        session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=x",
        session_webhook_expires_ms=123,
        is_in_at_list=True,
        robot_code="robot",
    )


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens the same journal again, as a restarted process would."""
    if request.param == "sqlite":
        yield lambda: SqliteJournal(tmp_path / "journal.sqlite3", remember_seconds=600)
        return
    server = await RedisServer().start()
    prefix = f"test:{uuid.uuid4().hex[:6]}:"
    try:
        yield lambda: RedisJournal(connect(server.url, False), prefix, "worker.1", 600, claim_seconds=30)
    finally:
        server.stop()


async def reopened(opener: Opener, work: Callable[[Journal], Awaitable[None]] | None = None) -> list[tuple[str, int]]:
    journal = opener()
    entries = await journal.open()
    if work is not None:
        await work(journal)
    await journal.close()
    return [(entry.message.msg_id, entry.attempts) for entry in entries]


async def test_an_entry_survives_until_finished_oldest_first_with_its_progress(opener: Opener) -> None:
    journal = opener()
    assert await journal.open() == []
    assert [await journal.add(message(n)) for n in (1, 2, 3)] == [True, True, True]
    await journal.record("msg-2", "0cal-2/changing", ["cal-2", "Holidays"])
    await journal.finish("msg-3")
    await journal.close()

    again = opener()
    entries = await again.open()
    await again.close()

    assert [(entry.message, entry.attempts) for entry in entries] == [(message(1), 1), (message(2), 1)]
    assert entries[1].progress == {"0cal-2/changing": ["cal-2", "Holidays"]}
    assert entries[0].progress == {}


async def test_each_start_counts_one_more_attempt(opener: Opener) -> None:
    journal = opener()
    await journal.open()
    await journal.add(message(1))
    await journal.close()

    assert [await reopened(opener) for _ in range(3)] == [[("msg-1", 1)], [("msg-1", 2)], [("msg-1", 3)]]


async def test_a_repeat_is_refused_while_unfinished_and_after_finishing(opener: Opener) -> None:
    journal = opener()
    await journal.open()
    assert await journal.add(message(1)) is True
    assert await journal.add(message(1)) is False
    await journal.close()

    async def finish_and_repeat(journal: Journal) -> None:
        await journal.finish("msg-1")
        assert await journal.add(message(1)) is False

    assert await reopened(opener, finish_and_repeat) == [("msg-1", 1)]
    assert await reopened(opener) == []


async def test_an_unwritable_sqlite_journal_accepts_everything_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    journal = SqliteJournal(tmp_path / "file" / "journal.sqlite3", remember_seconds=600)

    assert await journal.open() == []
    assert [await journal.add(message(1)), await journal.add(message(1))] == [True, True]
    await journal.record("msg-1", "card", True)
    await journal.finish("msg-1")
    await journal.close()


def test_progress_keeps_each_targets_steps_apart_and_shares_what_was_recorded() -> None:
    recorded = {"0a/changing": ["a", "A"]}
    progress = Progress("m", recorded)

    assert progress.scoped("0a").recorded("changing") == ["a", "A"]
    assert progress.scoped("0b").recorded("changing") is None
    assert progress.recorded("changing") is None


async def test_progress_records_through_its_journal_under_the_scoped_key() -> None:
    saved: list[tuple[str, str, object]] = []

    async def save(msg_id: str, key: str, value: object) -> None:
        saved.append((msg_id, key, value))

    target = Progress("m", {}, save).scoped("1x")
    await target.record("reply", {"outcome": "help"})

    assert saved == [("m", "1x/reply", {"outcome": "help"})]
    assert target.recorded("reply") == {"outcome": "help"}


def test_a_reply_survives_its_round_trip_through_json() -> None:
    reply = Reply(Outcome.UNSUBSCRIBED, {"calendar_id": "c", "name": "N"}, (Action("resubscribe", "c", "N"),))

    assert reply_from_json(reply_to_json(reply)) == reply


async def test_the_card_step_is_written_only_by_the_dyno_that_holds_the_entry() -> None:
    """After an outage another dyno may have taken an entry over: the first dyno's card step is refused (it sends no
    card), the new holder's is written, and a resumption sees it."""
    server = await RedisServer().start()
    prefix = f"test:{uuid.uuid4().hex[:6]}:"
    first = RedisJournal(connect(server.url, False), prefix, "worker.1", 600, claim_seconds=30)
    second = RedisJournal(connect(server.url, False), prefix, "worker.2", 600, claim_seconds=0.1)
    taken: list[Entry] = []
    try:
        await first.open()
        await second.open()
        assert await first.add(message(1))
        second.resume_elsewhere(taken.extend)  # the first dyno keeps nothing alive here, as during an outage
        async with asyncio.timeout(5):
            while not taken:
                await asyncio.sleep(0.02)

        assert await first.mark_card("msg-1", 1.0) is False
        assert await second.mark_card("msg-1", 1.0) is True
        assert [entry.message.msg_id for entry in taken] == ["msg-1"]
        third = RedisJournal(connect(server.url, False), prefix, "worker.2", 600, claim_seconds=30)
        [entry] = await third.open()
        assert entry.progress == {"card": True}
        await third.close()
    finally:
        await first.close()
        await second.close()
        server.stop()


async def test_a_card_step_redis_does_not_take_in_time_is_refused() -> None:
    server = await RedisServer().start()
    journal = RedisJournal(connect(server.url, False), "test:x:", "worker.1", 600, claim_seconds=30)
    try:
        await journal.open()
        assert await journal.add(message(1))
        server.stop()

        assert await journal.mark_card("msg-1", 0.6) is False
    finally:
        await journal.close()


async def test_progress_and_finish_redis_did_not_take_are_written_once_it_is_back() -> None:
    server = await RedisServer(durable=True).start()
    prefix = f"test:{uuid.uuid4().hex[:6]}:"
    journal = RedisJournal(connect(server.url, False), prefix, "worker.1", 600, claim_seconds=30)
    client = server.client()
    try:
        await journal.open()
        assert await journal.add(message(1)) and await journal.add(message(2))
        server.stop()
        await journal.record("msg-1", "0cal-1/changing", ["cal-1", "Holidays"])
        await journal.finish("msg-2")
        await server.start()

        async with asyncio.timeout(5):
            while await client.xlen(f"{prefix}journal") != 1:  # msg-2 crossed out, msg-1 still there
                await asyncio.sleep(0.05)
            while not await client.keys(f"{prefix}jprogress:*"):
                await asyncio.sleep(0.05)
        again = RedisJournal(connect(server.url, False), prefix, "worker.1", 600, claim_seconds=30)
        [entry] = await again.open()
        await again.close()
        assert entry.message.msg_id == "msg-1" and entry.progress == {"0cal-1/changing": ["cal-1", "Holidays"]}
    finally:
        await client.aclose()
        await journal.close()
        server.stop()


async def test_a_start_forgets_consumers_left_behind_with_nothing_pending_and_keeps_those_holding_entries() -> None:
    """Every process has a consumer name of its own, so each restart leaves one behind: the group must not grow."""
    server = await RedisServer().start()
    prefix = f"test:{uuid.uuid4().hex[:6]}:"
    client = server.client()

    def journal(name: str) -> RedisJournal:
        return RedisJournal(connect(server.url, False), prefix, name, 600, claim_seconds=0.05)

    try:
        done, holding = journal("worker.1:7:aaaa"), journal("worker.1:7:bbbb")
        await done.open()
        await holding.open()
        assert await done.add(message(1)) and await holding.add(message(2))
        await done.finish("msg-1")
        await done.close()
        await holding.close()  # as if killed: its entry stays pending
        async with asyncio.timeout(5):
            while min(c["idle"] for c in await client.xinfo_consumers(f"{prefix}journal", "bot")) <= 50:
                await asyncio.sleep(0.02)

        newcomer = journal("worker.1:8:cccc")
        await newcomer.open()
        await newcomer.close()

        consumers = {c["name"]: c["pending"] for c in await client.xinfo_consumers(f"{prefix}journal", "bot")}
        assert consumers == {"worker.1:7:bbbb": 1, "worker.1:8:cccc": 0}
    finally:
        await client.aclose()
        server.stop()
