"""unionIds in Redis, shared by every dyno, remembered without waiting for Redis's answer."""

from __future__ import annotations

from bot.stores.keys import KeyBuilder, of_organization
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import unlink_matching, write_behind

UNION_ID_DAYS = 30


class RedisUnionIds:
    """unionIds for UNION_ID_DAYS; remembered without waiting for Redis's answer."""

    def __init__(self, batcher: CommandBatcher, keys: KeyBuilder) -> None:
        self._batcher = batcher
        self._prefix = keys.concern("union")
        self._keys = keys

    async def get(self, staff_id: str) -> str | None:
        value = await self._batcher.send("GET", self._prefix + staff_id)
        return None if value is None else str(value)

    async def put(self, staff_id: str, union_id: str) -> None:
        write_behind(self._batcher, "SET", self._prefix + staff_id, union_id, "EX", UNION_ID_DAYS * 86_400)

    async def forget_organization(self, corp_id: str) -> int:
        """Its members' unionIds (kept by organization in an app that serves many; an internal app has one)."""
        return await unlink_matching(self._batcher, self._keys.pattern("union", of_organization(corp_id)))
