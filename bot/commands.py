"""Parse message text into a Command, and check whether a text can be a calendar id: pure, no I/O."""

from __future__ import annotations

import re
import unicodedata

from bot.models import Command

MAX_CALENDAR_ID_LENGTH = 256

# (keyword, command, locale); a Chinese keyword may be followed by its argument without a space.
_KEYWORDS = (
    ("unsubscribe", "unsubscribe", "en"),
    ("取消订阅", "unsubscribe", "zh_CN"),
    ("退订", "unsubscribe", "zh_CN"),
    ("help", "help", "en"),
    ("帮助", "help", "zh_CN"),
    ("?", "help", "en"),
    ("？", "help", "zh_CN"),
)
# Group messages arrive with the bot's @mention removed, but some clients leave it in the text.
_LEADING_MENTIONS = re.compile(r"^(?:@\S+\s+)+")


def parse(text: str | None, default_locale: str) -> Command:
    """Turn message text into a Command; anything not understood becomes help in the default language."""
    if text is None:
        return Command("help", default_locale, understood=False)
    cleaned = _LEADING_MENTIONS.sub("", text.strip() + " ").strip()
    for keyword, name, locale in _KEYWORDS:
        if cleaned[: len(keyword)].casefold() != keyword:
            continue
        rest = cleaned[len(keyword) :]
        if rest and not rest[0].isspace() and keyword.isascii():
            continue  # "unsubscribers" is not "unsubscribe rs"
        return Command(name, locale, argument=rest.strip())
    return Command("help", default_locale, understood=not cleaned)


def calendar_id_problem(value: str) -> str | None:
    """Why this text cannot be a calendar id ("missing", "dot_segment", "too_long", "bad_characters"), or None."""
    if not value:
        return "missing"
    if value in (".", ".."):
        return "dot_segment"
    if len(value) > MAX_CALENDAR_ID_LENGTH:
        return "too_long"
    if any(char.isspace() or unicodedata.category(char).startswith("C") for char in value):
        return "bad_characters"
    return None
