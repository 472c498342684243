"""Wildcard patterns for bulk commands: `*` any run of characters, `?` one; no other character is special; pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.models import Calendar

# Chinese input methods type the full-width forms; they mean the same.
ANY_RUN = frozenset("*＊")
ANY_ONE = frozenset("?？")
MAX_PATTERN_LENGTH = 256
MAX_MATCHED_LENGTH = 1_000  # characters of a name or id looked at


_WILDCARDS = ANY_RUN | ANY_ONE


def is_pattern(text: str) -> bool:
    return not _WILDCARDS.isdisjoint(text)  # asked of every unsubscribe: one pass in C


def matches(pattern: str, text: str) -> bool:
    """Whether the whole of `text` fits `pattern`, ignoring case (casefold: CJK, accents and ß included). The
    pattern is cut at its stars; the pieces between them are found leftmost, in order, each by a regular expression
    with every character escaped but `?` (no quantifier, so no backtracking blow-up whatever the text)."""
    wanted = pattern.strip().casefold()[:MAX_PATTERN_LENGTH]
    seen = text.strip().casefold()[:MAX_MATCHED_LENGTH]
    pieces = _STARS.split(wanted)
    if len(pieces) == 1:
        return _exactly(pieces[0]).fullmatch(seen) is not None
    first, *middle, last = pieces
    if len(first) + len(last) > len(seen) or not _exactly(first).match(seen):
        return False
    at = len(first)
    for piece in middle:
        found = _exactly(piece).search(seen, at)
        if found is None:
            return False
        at = found.end()
    tail = len(seen) - len(last)  # the piece after the last star ends the text
    return tail >= at and _exactly(last).fullmatch(seen, tail) is not None


_STARS = re.compile("[" + re.escape("".join(ANY_RUN)) + "]+")


def _exactly(piece: str) -> re.Pattern[str]:
    """A piece between stars: its characters literally, each `?` any one character."""
    return re.compile("".join("." if char in ANY_ONE else re.escape(char) for char in piece), re.DOTALL)


def select(pattern: str, calendars: Sequence[Calendar]) -> list[Calendar]:
    """The calendars whose name or id fits the pattern, in the order given."""
    return [c for c in calendars if matches(pattern, c.name) or matches(pattern, c.id)]
