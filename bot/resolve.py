"""Match what a user typed against their calendars: by id, then by name, then as a bare id; pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.commands import calendar_id_problem
from bot.models import Calendar


@dataclass(frozen=True, slots=True)
class Resolution:
    """One calendar to act on, several that share the name, or nothing."""

    calendar: Calendar | None = None
    matches: tuple[Calendar, ...] = ()


def resolve(text: str, calendars: Sequence[Calendar]) -> Resolution:
    """The calendar `text` means: an id of any of the user's calendars, else the name of exactly one subscribed
    calendar (case-insensitive), else the text itself if it can be an id; several names match: never guess."""
    for calendar in calendars:
        if calendar.id == text:
            return Resolution(calendar)
    wanted = text.strip().casefold()
    matches = tuple(c for c in calendars if c.type == "subscribed" and c.name.strip().casefold() == wanted)
    if len(matches) == 1:
        return Resolution(matches[0])
    if matches:
        return Resolution(matches=matches)
    if calendar_id_problem(text) is None:
        return Resolution(Calendar(text, "", "unknown"))
    return Resolution()


def subscribed(calendars: Sequence[Calendar]) -> list[Calendar]:
    return [calendar for calendar in calendars if calendar.type == "subscribed"]
