"""Pending bulk actions (a preview awaiting Confirm, a done set awaiting Undo): each usable once, by its owner only."""

from __future__ import annotations

import time
from typing import Any, Protocol

from bot.stores.keys import of_organization


class PreviewStore(Protocol):
    """Payloads kept under (kind, owner, token) for a while. `claim` takes one away atomically: of several dynos
    and presses, one gets it; a press with another owner gets nothing and leaves it in place."""

    async def save(self, kind: str, owner: str, token: str, payload: dict[str, Any], seconds: float) -> None: ...

    async def claim(self, kind: str, owner: str, token: str) -> dict[str, Any] | None: ...

    async def forget_organization(self, corp_id: str) -> int:
        """Forget the pending sets of the organization's users (owners are tenant keys); how many."""
        ...


class MemoryPreviews:
    """Pending sets of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str], tuple[dict[str, Any], float]] = {}

    async def save(self, kind: str, owner: str, token: str, payload: dict[str, Any], seconds: float) -> None:
        now = time.monotonic()
        self._kept = {key: kept for key, kept in self._kept.items() if kept[1] > now}
        self._kept[kind, owner, token] = (payload, now + seconds)

    async def claim(self, kind: str, owner: str, token: str) -> dict[str, Any] | None:
        payload, expires_at = self._kept.pop((kind, owner, token), (None, 0.0))
        return payload if expires_at > time.monotonic() else None

    async def forget_organization(self, corp_id: str) -> int:
        gone = [key for key in self._kept if key[1].startswith(of_organization(corp_id))]
        for key in gone:
            del self._kept[key]
        return len(gone)
