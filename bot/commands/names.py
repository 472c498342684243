"""The names of calendars the bot has recently seen listed, per user, so cards can name them without an API call."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from bot.models import Calendar

NAME_CAPACITY = 10_000  # (user, calendar) pairs kept; the least recently seen are forgotten first
NAME_SECONDS = 3_600.0  # a name is used for an hour after it was listed (calendars are rarely renamed)
MAX_NAME_LENGTH = 100  # cards show at most 80 characters of a name
MAX_NAMES_PER_LISTING = 100  # one user's long list cannot push everyone else's names out


class CalendarNames:
    """id -> name per user, bounded in count and time; filled from listings the bot made anyway."""

    def __init__(
        self,
        capacity: int = NAME_CAPACITY,
        seconds: float = NAME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._names: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._capacity = capacity
        self._seconds = seconds
        self._clock = clock

    def remember(self, union_id: str, calendars: Iterable[Calendar]) -> None:
        expires = self._clock() + self._seconds
        for count, calendar in enumerate(calendars):
            if count == MAX_NAMES_PER_LISTING:
                break
            if calendar.name:
                key = (union_id, calendar.id)
                self._names[key] = (calendar.name[:MAX_NAME_LENGTH], expires)
                self._names.move_to_end(key)
        while len(self._names) > self._capacity:
            self._names.popitem(last=False)

    def name(self, union_id: str, calendar_id: str) -> str:
        """The calendar's name as last listed for this user, or "" if not seen lately."""
        entry = self._names.get((union_id, calendar_id))
        if entry is None:
            return ""
        name, expires = entry
        if expires <= self._clock():
            del self._names[(union_id, calendar_id)]
            return ""
        return name
