"""Suite tickets in Redis: the latest per suite, kept without expiry (Redis persistence keeps it across restarts)."""

from __future__ import annotations

from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher

# The ticket (KEYS[1]) and when it was made (KEYS[2]) replaced together, unless the stored one was made later.
_STORE_IF_NEWER = """
local born = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) < born then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class RedisSuiteTickets:
    """The latest ticket per suite, kept without expiry (Redis persistence keeps it across restarts)."""

    def __init__(self, batcher: CommandBatcher, keys: KeyBuilder) -> None:
        self._batcher = batcher
        self._prefix = keys.concern("suite-ticket")

    async def latest(self, suite_key: str) -> str | None:
        value = await self._batcher.send("GET", self._prefix + suite_key)
        return None if value is None else str(value)

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        keys = [self._prefix + suite_key, f"{self._prefix}born:{suite_key}"]
        return bool(await self._batcher.send("EVAL", _STORE_IF_NEWER, 2, *keys, ticket, born_ms))

    async def forget_organization(self, corp_id: str) -> int:
        return 0  # the suite's, not any organization's
