"""Organizations that removed the app lately, noted in Redis by the dyno that got the event, for the others to drop
their own copies of that organization's data."""

from __future__ import annotations

import time

from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher

RELIEVED_SECONDS = 86_400  # how long a removal is noted for the other dynos (they look every few seconds)


async def note_relieved(redis: CommandBatcher, keys: KeyBuilder, corp_id: str) -> None:
    key = keys.single("relieved")
    await redis.send("HSET", key, corp_id, int(time.time() * 1000))
    await redis.send("EXPIRE", key, RELIEVED_SECONDS)


async def relieved_lately(redis: CommandBatcher, keys: KeyBuilder) -> dict[str, int]:
    noted = await redis.send("HGETALL", keys.single("relieved")) or {}
    if isinstance(noted, list):  # a client that answers the pairs flat
        noted = dict(zip(noted[::2], noted[1::2], strict=True))
    since = (time.time() - RELIEVED_SECONDS) * 1000
    return {str(corp): int(at) for corp, at in noted.items() if int(at) >= since}
