"""unionIds by staff id: looked up once from DingTalk, then kept (a unionId never changes)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from bot.stores.keys import of_organization

UNION_ID_CACHE_SIZE = 50_000  # far more than the employees of one company


class UnionIds(Protocol):
    async def get(self, staff_id: str) -> str | None: ...

    async def put(self, staff_id: str, union_id: str) -> None: ...

    async def forget_organization(self, corp_id: str) -> int:
        """Forget the unionIds of the organization's members (kept by organization in an ISV app); how many."""
        ...


class MemoryUnionIds:
    """The most recently used UNION_ID_CACHE_SIZE unionIds of this process."""

    def __init__(self, capacity: int = UNION_ID_CACHE_SIZE) -> None:
        self._union_ids: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    async def get(self, staff_id: str) -> str | None:
        union_id = self._union_ids.get(staff_id)
        if union_id is not None:
            self._union_ids.move_to_end(staff_id)
        return union_id

    async def put(self, staff_id: str, union_id: str) -> None:
        self._union_ids[staff_id] = union_id
        if len(self._union_ids) > self._capacity:
            self._union_ids.popitem(last=False)

    async def forget_organization(self, corp_id: str) -> int:
        gone = [key for key in self._union_ids if key.startswith(of_organization(corp_id))]
        for key in gone:
            del self._union_ids[key]
        return len(gone)
