"""Match what a user typed against their calendars, by id and by name, never guessing between them; pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.models import Calendar


@dataclass(frozen=True, slots=True)
class Resolution:
    """One calendar to act on, several the text could mean, or nothing."""

    calendar: Calendar | None = None
    matches: tuple[Calendar, ...] = ()


def resolve(text: str, calendars: Sequence[Calendar]) -> Resolution:
    """The calendar `text` means among the user's calendars: the one with that id, or the one subscribed calendar
    with that name (case-insensitive). A text that is one calendar's id and another's name, or the name of several,
    is ambiguous: never guess."""
    by_id = [calendar for calendar in calendars if calendar.id == text]
    wanted = text.strip().casefold()
    by_name = [c for c in subscribed(calendars) if c.name.strip().casefold() == wanted and c.id != text]
    candidates = by_id[:1] + by_name
    if len(candidates) == 1:
        return Resolution(candidates[0])
    return Resolution(matches=tuple(candidates))


def subscribed(calendars: Sequence[Calendar]) -> list[Calendar]:
    return [calendar for calendar in calendars if calendar.type == "subscribed"]
