"""Remember recently handled message ids for a while, bounded in memory, so no message is handled twice."""

from __future__ import annotations

import time
from collections import OrderedDict

REMEMBER_SECONDS = 600.0
MAX_REMEMBERED = 200_000  # about 40 MB at worst; a burst larger than this within ten minutes is implausible


class RecentIds:
    """A set of ids that forgets each one after `ttl` seconds, oldest first when full."""

    def __init__(self, ttl: float = REMEMBER_SECONDS, capacity: int = MAX_REMEMBERED) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def claim(self, key: str) -> bool:
        """True the first time a key is seen within the ttl, False for every repeat."""
        now = time.monotonic()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)
        if key in self._expiry:
            return False
        self._expiry[key] = now + self._ttl
        if len(self._expiry) > self._capacity:
            self._expiry.popitem(last=False)
        return True
