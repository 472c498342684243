"""The store of interactive cards, SQLite and Redis alike: what a card offered, to whom, and who used it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.stores.cards import CardRecord, CardStore, MemoryCards, Offer
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.cards import RedisCards
from bot.stores.redis.client import connect
from bot.stores.sqlite.cards import SqliteCards
from bot.stores.sqlite.database import Database
from tests.redisserver import RedisServer

RECORD = CardRecord(
    "dingcorp:asker",
    "cidGroup==",
    "2",
    "dingcorp",
    "robot",
    "en",
    (Offer("unsubscribe", "cal-1", "One"), Offer("resubscribe", "cal-2", "Two", "asker")),
)


@pytest_asyncio.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CardStore]:
    if request.param == "memory":
        yield MemoryCards()
        return
    if request.param == "sqlite":
        database = await Database(tmp_path / "bot.sqlite3").open()
        cards = SqliteCards(database)
        await cards.create()
        yield cards
        await database.close()
        return
    server = await RedisServer().start()
    batcher = CommandBatcher(connect(server.url, False))
    yield RedisCards(batcher, KeyBuilder("client"))
    await batcher.aclose()
    server.stop()


async def test_a_saved_card_is_read_back_as_it_was_and_an_unknown_one_is_none(store: CardStore) -> None:
    await store.save("track-1", RECORD)

    assert await store.get("track-1") == RECORD
    assert await store.get("track-2") is None


async def test_rows_are_everyones_unless_they_are_the_askers_own(store: CardStore) -> None:
    await store.save("track-1", RECORD)

    assert await store.find("track-1", RECORD, "0", "colleague") == RECORD.rows[0]
    assert await store.find("track-1", RECORD, "1", "colleague") is None
    assert await store.find("track-1", RECORD, "1", "asker") == RECORD.rows[1]
    for forged in ("2", "-1", " 0", "00000", "", "x"):
        assert await store.find("track-1", RECORD, forged, "asker") is None


async def test_a_pressers_own_offer_is_found_for_them_only_and_users_are_counted_once(store: CardStore) -> None:
    await store.save("track-1", RECORD)
    undo = Offer("resubscribe", "cal-1", "One", "colleague")

    token = await store.offer("track-1", undo)

    assert await store.find("track-1", RECORD, token, "colleague") == undo
    assert await store.find("track-1", RECORD, token, "asker") is None
    assert await store.find("track-2", RECORD, token, "colleague") is None
    assert [await store.used_by("track-1", user) for user in ("a", "b", "a")] == [1, 2, 2]


async def test_an_organizations_cards_are_forgotten_and_no_one_elses(store: CardStore) -> None:
    other = CardRecord("dingother:x", "cid2", "2", "dingother", "robot", "en", RECORD.rows)
    await store.save("track-1", RECORD)
    await store.save("track-2", other)
    token = await store.offer("track-1", Offer("resubscribe", "cal-1", "One", "colleague"))

    assert await store.forget_organization("dingcorp") >= 1

    assert await store.get("track-1") is None and await store.get("track-2") == other
    assert await store.find("track-1", RECORD, token, "colleague") is None
