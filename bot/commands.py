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
    ("resubscribe", "resubscribe", "en"),
    ("重新订阅", "resubscribe", "zh_CN"),
    ("calendars", "list", "en"),
    ("list", "list", "en"),
    ("日历", "list", "zh_CN"),
    ("列表", "list", "zh_CN"),
    ("help", "help", "en"),
    ("帮助", "help", "zh_CN"),
    ("?", "help", "en"),
    ("？", "help", "zh_CN"),
)
# The words a command is written with in each locale (its first keyword), for the commands a button sends.
COMMAND_WORDS: dict[str, dict[str, str]] = {}
for _keyword, _name, _locale in _KEYWORDS:
    COMMAND_WORDS.setdefault(_locale, {}).setdefault(_name, _keyword)
_SEPARATORS = re.compile(r"[,，、]")
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


def split_targets(argument: str) -> list[str]:
    """The calendars named in an argument: separated by commas (`,` `，`) or `、`, trimmed, repeats dropped."""
    targets = (part.strip() for part in _SEPARATORS.split(argument))
    return list(dict.fromkeys(target for target in targets if target))


def calendar_id_problem(value: str) -> str | None:
    """Why this text cannot be a calendar id ("missing", "dot_segment", "too_long", "whitespace",
    "bad_characters"), or None."""
    if not value:
        return "missing"
    if value in (".", ".."):
        return "dot_segment"
    if len(value) > MAX_CALENDAR_ID_LENGTH:
        return "too_long"
    if any(unicodedata.category(char).startswith("C") for char in value):
        return "bad_characters"
    if any(char.isspace() for char in value):
        return "whitespace"
    return None


def command_text(command: str, calendar_id: str, locale: str) -> str:
    """The text a user would type for this command on this calendar, in the locale's words."""
    return f"{COMMAND_WORDS[locale][command]} {calendar_id}"
