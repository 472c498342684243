"""Suite tickets: the newest ticket DingTalk made for each suite (ISV app), by its event's eventBornTime; it must
survive a restart."""

from __future__ import annotations

from typing import Protocol


class SuiteTickets(Protocol):
    async def latest(self, suite_key: str) -> str | None:
        """The ticket stored last for the suite, or None before any arrived."""
        ...

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        """Keep `ticket` as the suite's latest, unless the one stored was made later (`born_ms`, eventBornTime):
        an older ticket's event pushed late never replaces a newer ticket. Whether it was kept."""
        ...

    async def forget_organization(self, corp_id: str) -> int:
        """Nothing: a ticket is the suite's, not an organization's (there for every store alike)."""
        ...


class MemorySuiteTickets:
    """Tickets of this process: for tests and tools only, since they do not survive a restart."""

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[int, str]] = {}

    async def latest(self, suite_key: str) -> str | None:
        stored = self._tickets.get(suite_key)
        return stored[1] if stored else None

    async def store(self, suite_key: str, ticket: str, born_ms: int = 0) -> bool:
        stored = self._tickets.get(suite_key)
        if stored is not None and stored[0] > born_ms:
            return False
        self._tickets[suite_key] = (born_ms, ticket)
        return True

    async def forget_organization(self, corp_id: str) -> int:
        return 0
