"""The preview and audit stores: one contract, run against the in-process stores, the embedded SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from bot.stores.audit import (
    KEEP_SECONDS,
    MAX_REFUSALS,
    MAX_REFUSED_SUBJECT,
    AuditRecord,
    AuditStore,
    MemoryAudit,
    Refusal,
)
from bot.stores.keys import KeyBuilder
from bot.stores.previews import MemoryPreviews, PreviewStore
from bot.stores.redis.audit import RedisAudit
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.previews import RedisPreviews
from bot.stores.sqlite.audit import SqliteAudit
from bot.stores.sqlite.database import Database
from bot.stores.sqlite.journal import SqliteJournal
from bot.stores.sqlite.previews import SqlitePreviews
from tests.redisserver import RedisServer

KINDS = ["memory", "sqlite", "redis"]
TOKEN = "A" * 22


@pytest_asyncio.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[PreviewStore, AuditStore]]:
    if request.param == "memory":
        yield MemoryPreviews(), MemoryAudit()
    elif request.param == "sqlite":
        database = await Database(tmp_path / "bot.sqlite3").open()
        journal = SqliteJournal(tmp_path / "journal.sqlite3", 600)
        previews, audits = SqlitePreviews(database), SqliteAudit(database, journal)
        await previews.create()
        await audits.create()
        await journal.open()
        yield previews, audits
        await journal.close()
        await database.close()
    else:
        server = await RedisServer().start()
        batcher = CommandBatcher(connect(server.url, False))
        yield RedisPreviews(batcher, KeyBuilder("test")), RedisAudit(batcher, KeyBuilder("test"))
        await batcher.aclose()
        server.stop()


async def test_a_pending_set_is_claimed_once_and_only_by_its_owner(stores: tuple[PreviewStore, AuditStore]) -> None:
    previews, _ = stores
    await previews.save("confirm", "corp:alice", TOKEN, {"calendars": [["cal-1", "Team"]]}, 60)

    assert await previews.claim("confirm", "corp:mallory", TOKEN) is None
    assert await previews.claim("undo", "corp:alice", TOKEN) is None
    claims = await asyncio.gather(*(previews.claim("confirm", "corp:alice", TOKEN) for _ in range(5)))

    assert [claim for claim in claims if claim] == [{"calendars": [["cal-1", "Team"]]}]
    assert await previews.claim("confirm", "corp:alice", TOKEN) is None


async def test_a_pending_set_expires(stores: tuple[PreviewStore, AuditStore]) -> None:
    previews, _ = stores
    await previews.save("confirm", "corp:alice", TOKEN, {"n": 1}, 0.05)
    await asyncio.sleep(0.1)

    assert await previews.claim("confirm", "corp:alice", TOKEN) is None


RECORD = AuditRecord(0.0, "unsubscribe", "staff1", "corp", "u1", "cal-1", "Team Offsite", "unsubscribed", "", "R", "m")


async def test_audit_records_by_id_or_name_oldest_first_the_newest_kept(
    stores: tuple[PreviewStore, AuditStore],
) -> None:
    _, audit = stores
    now = time.time()
    for n in range(5):
        await audit.record(replace(RECORD, at=now - 10 + n, request_id=f"R{n}"))
    await audit.record(replace(RECORD, at=now, calendar_id="cal-2", name="Other", request_id="X"))

    by_id = await audit.latest("cal-1", 3)
    by_name = await audit.latest("  team OFFSITE ", 3)

    assert [record.request_id for record in by_id] == ["R2", "R3", "R4"]
    assert by_name == by_id and by_id[0] == replace(RECORD, at=now - 8, request_id="R2")
    assert await audit.latest("nothing", 3) == []


async def test_audit_records_older_than_90_days_are_gone(stores: tuple[PreviewStore, AuditStore]) -> None:
    _, audit = stores
    await audit.record(replace(RECORD, at=time.time() - KEEP_SECONDS - 60, request_id="old"))
    await audit.record(replace(RECORD, at=time.time(), request_id="new"))

    assert [record.request_id for record in await audit.latest("cal-1", 10)] == ["new"]


async def test_records_written_at_once_are_all_kept(stores: tuple[PreviewStore, AuditStore]) -> None:
    _, audit = stores
    now = time.time()

    await asyncio.gather(*(audit.record(replace(RECORD, at=now - 100 + n, request_id=f"R{n}")) for n in range(50)))

    assert [record.request_id for record in await audit.latest("cal-1", 100)] == [f"R{n}" for n in range(50)]


async def test_a_refusal_is_one_row_per_sender_and_command_counted_the_newest_few_per_organization(
    stores: tuple[PreviewStore, AuditStore],
) -> None:
    _, audit = stores
    now = float(int(time.time()))  # whole seconds: every store gives them back exactly
    await audit.refuse(Refusal(now - 50, "audit", "staff1", "corp", "first", 1))
    await audit.refuse(Refusal(now - 40, "audit", "staff1", "corp", "x" * 100, 1))  # the same sender and command
    await audit.refuse(Refusal(now - 30, "stats", "staff1", "corp", "", 1))
    await audit.refuse(Refusal(now - 20, "audit", "staff1", "other-corp", "theirs", 1))
    for n in range(MAX_REFUSALS - 2):
        await audit.refuse(Refusal(now - 10 + n / 2, "audit", f"staff{n + 2}", "corp", "", 1))

    kept = await audit.refusals("corp")

    assert len(kept) == MAX_REFUSALS and kept == sorted(kept, key=lambda refusal: refusal.at)
    assert kept[0] == Refusal(now - 40, "audit", "staff1", "corp", "x" * MAX_REFUSED_SUBJECT, 2)
    await audit.refuse(Refusal(now, "audit", "staff99", "corp", "", 1))  # one more: the oldest goes
    assert [refusal.action for refusal in (await audit.refusals("corp"))[:1]] == ["stats"]
    assert await audit.refusals("other-corp") == [Refusal(now - 20, "audit", "staff1", "other-corp", "theirs", 1)]
