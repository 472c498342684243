"""The Redis journal across dynos (taking over, outages, consumers left behind) and the progress a journal keeps;
the journal's contract itself is in test_contract.py."""

from __future__ import annotations

import asyncio
import uuid

from bot.commands.progress import Progress, reply_from_json, reply_to_json
from bot.models import Action, Outcome, Reply
from bot.stores.journal import Entry
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.journal import RedisJournal
from tests.helpers_journal import journaled
from tests.redisserver import RedisServer


def redis_journal(url: str, app: str, consumer: str, remember: float, claim_seconds: float) -> RedisJournal:
    """A journal as a dyno of the app has it, with a Redis client of its own (another process's)."""
    return RedisJournal(CommandBatcher(connect(url, False)), KeyBuilder(app), consumer, remember, claim_seconds)


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
    app = f"test{uuid.uuid4().hex[:6]}"
    first = redis_journal(server.url, app, "worker.1", 600, claim_seconds=30)
    second = redis_journal(server.url, app, "worker.2", 600, claim_seconds=0.1)
    taken: list[Entry] = []
    try:
        await first.open()
        await second.open()
        assert await first.add(journaled(1))
        second.resume_elsewhere(taken.extend)  # the first dyno keeps nothing alive here, as during an outage
        async with asyncio.timeout(5):
            while not taken:
                await asyncio.sleep(0.02)

        assert await first.mark_card("msg-1", 1.0) is False
        assert await second.mark_card("msg-1", 1.0) is True
        assert [entry.message.msg_id for entry in taken] == ["msg-1"]
        third = redis_journal(server.url, app, "worker.2", 600, claim_seconds=30)
        [entry] = await third.open()
        assert entry.progress == {"card": True}
        await third.close()
    finally:
        await first.close()
        await second.close()
        server.stop()


async def test_a_card_step_redis_does_not_take_in_time_is_refused() -> None:
    server = await RedisServer().start()
    journal = redis_journal(server.url, "testx", "worker.1", 600, claim_seconds=30)
    try:
        await journal.open()
        assert await journal.add(journaled(1))
        server.stop()

        assert await journal.mark_card("msg-1", 0.6) is False
    finally:
        await journal.close()


async def test_progress_and_finish_redis_did_not_take_are_written_once_it_is_back() -> None:
    server = await RedisServer(durable=True).start()
    app = f"test{uuid.uuid4().hex[:6]}"
    prefix = KeyBuilder(app).prefix
    journal = redis_journal(server.url, app, "worker.1", 600, claim_seconds=30)
    client = server.client()
    try:
        await journal.open()
        assert await journal.add(journaled(1)) and await journal.add(journaled(2))
        server.stop()
        await journal.record("msg-1", "0cal-1/changing", ["cal-1", "Holidays"])
        await journal.finish("msg-2")
        await server.start()

        async with asyncio.timeout(5):
            while await client.xlen(f"{prefix}journal") != 1:  # msg-2 crossed out, msg-1 still there
                await asyncio.sleep(0.05)
            while not await client.keys(f"{prefix}jprogress:*"):
                await asyncio.sleep(0.05)
        again = redis_journal(server.url, app, "worker.1", 600, claim_seconds=30)
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
    app = f"test{uuid.uuid4().hex[:6]}"
    prefix = KeyBuilder(app).prefix
    client = server.client()

    def journal(name: str) -> RedisJournal:
        return redis_journal(server.url, app, name, 600, claim_seconds=0.05)

    try:
        done, holding = journal("worker.1:7:aaaa"), journal("worker.1:7:bbbb")
        await done.open()
        await holding.open()
        assert await done.add(journaled(1)) and await holding.add(journaled(2))
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
