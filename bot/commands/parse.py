"""Parse message text into a Command, and check whether a text can be a calendar id: pure, no I/O."""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from bot.models import Command

MAX_CALENDAR_ID_LENGTH = 256
MAX_TARGETS = 20  # calendars one command may name; bulk work needs its own, confirmed path

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
    ("whoami", "whoami", "en"),
    ("我是谁", "whoami", "zh_CN"),
    ("confirm", "confirm", "en"),
    ("确认", "confirm", "zh_CN"),
    ("undo", "undo", "en"),
    ("撤销", "undo", "zh_CN"),
    ("stats", "stats", "en"),
    ("统计", "stats", "zh_CN"),
    ("audit", "audit", "en"),
    ("审计", "audit", "zh_CN"),
    ("disconnect", "disconnect", "en"),
    ("断开", "disconnect", "zh_CN"),
    ("help", "help", "en"),
    ("帮助", "help", "zh_CN"),
    ("?", "help", "en"),
    ("？", "help", "zh_CN"),
)
# The words a command is written with in each locale (its first keyword), for the commands a button sends.
COMMAND_WORDS: dict[str, dict[str, str]] = {}
for _keyword, _name, _locale in _KEYWORDS:
    COMMAND_WORDS.setdefault(_locale, {}).setdefault(_name, _keyword)
# One target: a quoted one ("" inside stands for one "), only space around it before the next separator, or else
# everything up to the next separator. Possessive (*+ ++): an unclosed quote is read once, not re-tried backwards.
_QUOTED_TARGET = re.compile(r'\s*+"((?:[^"]++|"")*+)"\s*+(?=[,，、]|\Z)')
_SEPARATOR = re.compile(r"[,，、]")
_GAP = re.compile(r"[\s,，、]*+")  # separators and space between targets, skipped in one step
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


class Target(NamedTuple):
    """One calendar a command names: the text, and whether it was quoted (an exact id, as buttons send it)."""

    text: str
    exact: bool = False


def split_targets(argument: str, limit: int = MAX_TARGETS) -> list[Target] | None:
    """The calendars named in an argument, separated by `,` `，` or `、`, trimmed, repeats dropped; a quoted target
    keeps its separators and spaces. None when it names more than `limit` (repeats counted): reading stops there, so
    a huge argument costs no memory and little time."""
    targets: dict[Target, None] = {}
    named, end = 0, len(argument)
    position = _end_of_gap(argument, 0)
    while position < end:
        named += 1
        if named > limit:
            return None
        quoted = _QUOTED_TARGET.match(argument, position)
        if quoted is not None:
            target = Target(quoted.group(1).replace('""', '"'), exact=True)
            position = quoted.end()
        else:
            separator = _SEPARATOR.search(argument, position)
            stop = separator.start() if separator is not None else end
            target = Target(argument[position:stop].strip())
            position = stop
        if target.text:
            targets[target] = None
        position = _end_of_gap(argument, position)
    return list(targets)


def _end_of_gap(argument: str, position: int) -> int:
    gap = _GAP.match(argument, position)
    return gap.end() if gap is not None else position


def quote_target(calendar_id: str) -> str:
    """An id as an exact, quoted target: `"` doubled inside, so no character of it can split or end it."""
    return '"' + calendar_id.replace('"', '""') + '"'


_WHITESPACE = re.compile(r"\s")  # what str.isspace() calls whitespace, searched in C


def calendar_id_problem(value: str) -> str | None:
    """Why this text cannot be a calendar id ("missing", "dot_segment", "too_long", "whitespace",
    "bad_characters"), or None."""
    if not value:
        return "missing"
    if value in (".", ".."):
        return "dot_segment"
    if len(value) > MAX_CALENDAR_ID_LENGTH:
        return "too_long"
    # A printable text has no control or format character: the per-character look is needed only for the others.
    if not value.isprintable() and any(unicodedata.category(char).startswith("C") for char in value):
        return "bad_characters"
    if _WHITESPACE.search(value):
        return "whitespace"
    return None


def command_text(command: str, calendar_id: str, locale: str) -> str:
    """The text a button sends for this command on exactly this calendar, in the locale's words."""
    return f"{COMMAND_WORDS[locale][command]} {quote_target(calendar_id)}"
