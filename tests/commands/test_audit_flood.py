"""Refused admin commands cannot grow the audit store: 300 refusals with distinct texts, through the real bot,
stored in SQLite and in Redis."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.sandbox.platform import Sandbox
from tests.helpers import BOT_ENV, User, card, converse, new_user, running_bot, started_sandbox
from tests.redisserver import RedisServer

ADMIN = User("admin0001", "unionAdmin0001")
REFUSALS = 300
SENDERS = 30  # ten each: within the per-sender rate limit, so every one is a refusal
GROWTH_LIMIT = 8 * 1024  # bytes the 300 refusals may add to the store


def sqlite_bytes(state: Path) -> int:
    """The pages the embedded database uses (its WAL included), as a reader sees them."""
    with sqlite3.connect(f"file:{state / 'bot.sqlite3'}?mode=ro", uri=True) as database:
        pages = (
            database.execute("PRAGMA page_count").fetchone()[0]
            - database.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return int(pages * database.execute("PRAGMA page_size").fetchone()[0])


async def redis_audit_bytes(server: RedisServer) -> int:
    """The memory Redis holds for the audit keys."""
    client = server.client()
    try:
        keys = [key async for key in client.scan_iter(match="calbot:*:audit:*")]
        return sum([int(await client.memory_usage(key) or 0) for key in keys])
    finally:
        await client.aclose()


async def refuse_many(sandbox: Sandbox) -> None:
    senders = [new_user(sandbox) for _ in range(SENDERS)]

    async def refused(user: User, first: int) -> None:
        for number in range(first, first + REFUSALS // SENDERS):
            _, reply = await converse(sandbox, sandbox.chat(f"audit {number:04d} {'x' * 200}", user.staff_id))
            assert card(reply)["title"] == "🔒 For admins only"

    await asyncio.gather(*(refused(user, n * 100) for n, user in enumerate(senders)))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_three_hundred_refusals_add_at_most_a_few_kilobytes(
    kind: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {**BOT_ENV, "BOT_ADMINS": ADMIN.staff_id, "BOT_STATE_DIR": str(tmp_path)}
    if kind == "redis":
        env["REDIS_URL"] = redis_server.url
    async with started_sandbox() as sandbox:
        sandbox.add_user(ADMIN.staff_id, ADMIN.union_id)
        async with running_bot(sandbox, env):
            await converse(sandbox, sandbox.chat("audit warm-up", new_user(sandbox).staff_id))  # tables and keys exist
            before = sqlite_bytes(tmp_path) if kind == "sqlite" else await redis_audit_bytes(redis_server)

            await refuse_many(sandbox)

            after = sqlite_bytes(tmp_path) if kind == "sqlite" else await redis_audit_bytes(redis_server)
            _, listed = await converse(sandbox, sandbox.chat("audit", ADMIN.staff_id))

    assert after - before <= GROWTH_LIMIT, (before, after)
    lines = [line for line in card(listed)["text"].splitlines() if " · audit **" in line]
    assert len(lines) == 20  # the senders refused last, one line each
