"""Each sender's calendar list for a few seconds, per organization, so a typed command right after a list (or another
typed command) resolves its text without listing again; dropped whenever the bot changes that sender's calendars."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from bot.models import Calendar

LIST_SECONDS = 5.0  # long enough for "list, then type a name"; short enough that a change made elsewhere shows soon
LIST_CAPACITY = 1_000  # senders' lists kept at most (only those of the last LIST_SECONDS are kept at all)
MAX_LISTED = 200  # a longer list is not kept: it is rare and would take the memory of many short ones

Key = tuple[str, str]  # (organization scope, unionId): a unionId is only meaningful within its organization
Stamp = tuple[int, float]  # a sender's version and the time a listing of their calendars began


class RecentCalendars:
    """(organization, unionId) -> the calendars as last listed, for LIST_SECONDS. Every change the bot asks of
    DingTalk for a sender drops their list, and a listing that was under way while a change was made is not kept
    (`begin` before listing, `put` after): a kept list never predates the bot's own last change."""

    def __init__(
        self, seconds: float = LIST_SECONDS, capacity: int = LIST_CAPACITY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._capacity = capacity
        self._clock = clock
        # oldest first; a dropped list leaves its version (calendars None) so that a listing under way is not kept
        self._entries: OrderedDict[Key, tuple[tuple[Calendar, ...] | None, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, organization: str, union_id: str) -> list[Calendar] | None:
        """The sender's calendars listed less than LIST_SECONDS ago and unchanged by the bot since, else None."""
        entry = self._entries.get((organization, union_id))
        if entry is None or entry[0] is None or entry[1] <= self._clock():
            return None
        return list(entry[0])

    def begin(self, organization: str, union_id: str) -> Stamp:
        """Taken before listing, handed to put(): a change since then makes the listing too old to keep, and so does
        its taking LIST_SECONDS (a change's trace is kept that long)."""
        return self._version((organization, union_id)), self._clock()

    def put(self, organization: str, union_id: str, calendars: Sequence[Calendar], stamp: Stamp) -> None:
        key = (organization, union_id)
        version, began = stamp
        if self._version(key) != version or len(calendars) > MAX_LISTED:
            return
        if began + self._seconds > self._clock():  # counted from when the listing began
            self._store(key, tuple(calendars), began + self._seconds, version)

    def drop(self, organization: str, union_id: str) -> None:
        """The bot is changing this sender's calendars: forget their list, and any listing now under way."""
        key = (organization, union_id)
        self._store(key, None, self._clock() + self._seconds, self._version(key) + 1)

    def _version(self, key: Key) -> int:
        entry = self._entries.get(key)
        return entry[2] if entry is not None else 0

    def _store(self, key: Key, calendars: tuple[Calendar, ...] | None, expires: float, version: int) -> None:
        now = self._clock()
        self._entries[key] = (calendars, expires, version)
        self._entries.move_to_end(key)
        entries = self._entries
        while entries and (len(entries) > self._capacity or next(iter(entries.values()))[1] <= now):
            entries.popitem(last=False)
