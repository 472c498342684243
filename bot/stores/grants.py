"""User grants: one opaque blob per user (their refresh token, encrypted by the caller); must survive a restart."""

from __future__ import annotations

import math
import time
from typing import Protocol

from bot.stores.keys import grant_of_organization


class UserGrants(Protocol):
    async def get(self, user: str) -> bytes | None:
        """The user's blob as stored, or None."""
        ...

    async def put(self, user: str, blob: bytes, expires_in: float | None = None) -> None:
        """Keep `blob` for the user, in place of any before it; gone after `expires_in` seconds if given."""
        ...

    async def delete(self, user: str) -> bool:
        """Forget the user's blob; whether there was one."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Forget the blobs of the organization's users and their pending connects; how many."""
        ...


class MemoryGrants:
    """Grants of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._grants: dict[str, tuple[bytes, float]] = {}

    async def get(self, user: str) -> bytes | None:
        blob, expires_at = self._grants.get(user, (None, math.inf))
        return blob if expires_at > time.monotonic() else None

    async def put(self, user: str, blob: bytes, expires_in: float | None = None) -> None:
        now = time.monotonic()
        self._grants = {key: kept for key, kept in self._grants.items() if kept[1] > now}
        self._grants[user] = (bytes(blob), math.inf if expires_in is None else now + expires_in)

    async def delete(self, user: str) -> bool:
        return self._grants.pop(user, None) is not None

    async def forget_organization(self, corp_id: str) -> int:
        gone = [user for user in self._grants if grant_of_organization(user, corp_id)]
        for user in gone:
            del self._grants[user]
        return len(gone)
