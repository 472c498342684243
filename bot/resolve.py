"""Match what a user typed against their calendars, by id and by name, never guessing between them; pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.commands import Target
from bot.models import Calendar


@dataclass(frozen=True, slots=True)
class Resolution:
    """One calendar to act on, several the text could mean, or nothing."""

    calendar: Calendar | None = None
    matches: tuple[Calendar, ...] = ()


def resolve(target: Target, calendars: Sequence[Calendar]) -> Resolution:
    """The calendar `target` means among the user's calendars: the one with that id, or the one subscribed calendar
    with that name (case-insensitive). A text that is one calendar's id and another's name, or the name of several,
    is ambiguous; a quoted (exact) target is the id when one has it, since that is what the bot's buttons send."""
    by_id = [calendar for calendar in calendars if calendar.id == target.text]
    if by_id and target.exact:
        return Resolution(by_id[0])
    wanted = target.text.strip().casefold()
    by_name = [c for c in subscribed(calendars) if c.name.strip().casefold() == wanted and c.id != target.text]
    candidates = by_id[:1] + by_name
    if len(candidates) == 1:
        return Resolution(candidates[0])
    return Resolution(matches=tuple(candidates))


def subscribed(calendars: Sequence[Calendar]) -> list[Calendar]:
    return [calendar for calendar in calendars if calendar.type == "subscribed"]
