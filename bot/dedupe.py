"""Remember recently handled message ids for a while, bounded in memory, so no message is handled twice."""

from __future__ import annotations

import time

REMEMBER_SECONDS = 600.0
MAX_REMEMBERED = 200_000  # about 25 MB at worst; a burst larger than this within ten minutes is implausible


class RecentIds:
    """A set of ids that remembers each one for at least `ttl` seconds (and at most twice that), and never more than
    `capacity` at once: two generations of ids, the older one forgotten whole. Plain sets hold about half the memory
    per id of an ordered map of expiry times, and a claim costs two lookups."""

    def __init__(self, ttl: float = REMEMBER_SECONDS, capacity: int = MAX_REMEMBERED) -> None:
        self._ttl = ttl
        self._generation_size = max(1, capacity // 2)
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self._next_generation_at = time.monotonic() + ttl

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def __contains__(self, key: object) -> bool:
        return key in self._current or key in self._previous

    def claim(self, key: str) -> bool:
        """True the first time a key is seen within the ttl, False for every repeat."""
        now = time.monotonic()
        if now >= self._next_generation_at or len(self._current) >= self._generation_size:
            stale = now >= self._next_generation_at + self._ttl  # nothing claimed for a whole generation
            self._previous, self._current = (set() if stale else self._current), set()
            self._next_generation_at = now + self._ttl
        if key in self._current or key in self._previous:
            return False
        self._current.add(key)
        return True
