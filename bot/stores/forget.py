"""Forgetting an organization that removed an ISV app: every key and row of it, in Redis or SQLite and in memory."""

from __future__ import annotations

import re
import sqlite3
import time

from bot.stores.redis.batch import CommandBatcher
from bot.stores.sqlite.database import Database

SCAN_COUNT = 1000  # keys Redis looks at per SCAN step
_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")
_LIKE_SPECIAL = re.compile(r"[%_\\]")


def glob_literal(text: str) -> str:
    """`text` matched literally in a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\g<0>", text)


async def unlink_matching(redis: CommandBatcher, pattern: str) -> int:
    """Delete every key matching the pattern (SCAN, never KEYS: Redis keeps serving meanwhile); how many."""
    cursor, deleted = "0", 0
    while True:
        cursor, keys = await redis.send("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        if keys:
            deleted += int(await redis.send("UNLINK", *keys))
        if str(cursor) == "0":
            return deleted


def redis_patterns(prefix: str, namespace: str, corp_id: str) -> list[str]:
    """The organization's keys: its token and its users' (token cache), grants and pending connects, bulk previews
    (owner last: `{kind}:{token}:{corp}:{staff}`), per-sender windows and "busy" notes, per-API windows."""
    corp = glob_literal(corp_id)
    return [
        f"{glob_literal(prefix)}token:org:{corp}",
        f"{glob_literal(prefix)}token:user:{corp}:*",
        f"{glob_literal(prefix)}grant:{corp}:*",
        f"{glob_literal(prefix)}grant:pending:{corp}:*",
        f"calbot:{glob_literal(namespace)}:pending:*:*:{corp}:*",
        f"{glob_literal(prefix)}user:{corp}:*",
        f"{glob_literal(prefix)}told:{corp}:*",
        f"{glob_literal(prefix)}api:{corp}/*",
    ]


async def forget_in_redis(redis: CommandBatcher, prefix: str, namespace: str, corp_id: str) -> int:
    deleted = 0
    for pattern in redis_patterns(prefix, namespace, corp_id):
        deleted += await unlink_matching(redis, pattern)
    return deleted


async def forget_in_sqlite(database: Database, corp_id: str) -> int:
    """Its users' grants and pending connects, and its bulk previews."""
    like = _LIKE_SPECIAL.sub(r"\\\g<0>", corp_id)

    def forget(connection: sqlite3.Connection) -> int:
        grants = connection.execute(
            "DELETE FROM user_grants WHERE user_key LIKE ? ESCAPE '\\' OR user_key LIKE ? ESCAPE '\\'",
            (f"{like}:%", f"pending:{like}:%"),
        ).rowcount
        previews = connection.execute("DELETE FROM previews WHERE owner LIKE ? ESCAPE '\\'", (f"{like}:%",)).rowcount
        return int(grants + previews)

    return await database.transaction(forget)


RELIEVED_SECONDS = 86_400  # how long a removal is noted for the other dynos (they look every few seconds)


async def note_relieved(redis: CommandBatcher, prefix: str, corp_id: str) -> None:
    key = f"{prefix}relieved"
    await redis.send("HSET", key, corp_id, int(time.time() * 1000))
    await redis.send("EXPIRE", key, RELIEVED_SECONDS)


async def relieved_lately(redis: CommandBatcher, prefix: str) -> dict[str, int]:
    noted = await redis.send("HGETALL", f"{prefix}relieved") or {}
    if isinstance(noted, list):  # a client that answers the pairs flat
        noted = dict(zip(noted[::2], noted[1::2], strict=True))
    since = (time.time() - RELIEVED_SECONDS) * 1000
    return {str(corp): int(at) for corp, at in noted.items() if int(at) >= since}
