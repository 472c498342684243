"""A card as a DingTalk client shows it, drawn in a terminal: tags and escapes gone, lines wrapped inside a frame."""

from __future__ import annotations

import re
import unicodedata

_FONT_TAG = re.compile(r"</?font\b[^>]*>", re.IGNORECASE)
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_\[\]()#!|~])")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}
_ENTITY = re.compile("|".join(_ENTITIES))
_EMOJI_PRESENTATION = "\ufe0f"
_NO_LINE_START = frozenset("。，、；：！？）」』】》〉")


def client_text(markdown: str) -> str:
    """The markdown as a reader sees it in DingTalk: no <font> tags, escapes and entities shown as characters."""
    text = _FONT_TAG.sub("", markdown)
    text = _ENTITY.sub(lambda match: _ENTITIES[match.group()], text)
    text = _MARKDOWN_ESCAPE.sub(r"\1", text)
    return "".join(char for char in text if unicodedata.category(char) != "Cf")  # zero-width spaces and the like


def display_width(text: str) -> int:
    """Terminal columns the text takes: wide (CJK, most emoji) characters two, combining and invisible ones none."""
    return sum(_widths(text))


def _widths(text: str) -> list[int]:
    widths = [_width(char) for char in text]
    for index, char in enumerate(text):
        # An emoji presentation selector makes the narrow symbol before it (✏, ⚠) as wide as other emoji; after a
        # letter or a space (a frame's padding) it changes nothing, so a frame's padding stays what was measured.
        after_symbol = index and unicodedata.category(text[index - 1]) == "So"
        if char == _EMOJI_PRESENTATION and after_symbol and widths[index - 1] == 1:
            widths[index] = 1
    return widths


def _width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def wrap(line: str, width: int) -> list[str]:
    """Split a line into pieces at most `width` columns wide, at a space where there is one; list items and
    indented lines keep their indentation on the following pieces."""
    indent = " " * (len(line) - len(line.lstrip(" ")) + (2 if line.lstrip(" ").startswith("- ") else 0))
    if len(indent) > width // 2:
        indent = ""
    pieces: list[str] = []
    rest = line
    while display_width(rest) > width:
        cut, used, last_space = 0, 0, -1
        for index, char_width in enumerate(_widths(rest)):
            if used + char_width > width:
                break
            used += char_width
            cut = index + 1
            if rest[index] == " " and index > len(indent):
                last_space = index
        # Inside a word of spaced script go back to the last space; CJK text may break between any two characters.
        in_a_word = rest[cut] != " " and _width(rest[cut]) == 1 and _width(rest[cut - 1]) == 1
        if in_a_word and last_space > 0:
            cut = last_space
        elif rest[cut] in _NO_LINE_START and cut > 1:
            cut -= 1  # CJK closing punctuation goes down with the character before it, never alone
        cut = max(cut, 1)  # a character wider than the whole line still moves on
        pieces.append(rest[:cut].rstrip(" "))
        rest = indent + rest[cut:].lstrip(" ")
    if rest.strip() or not pieces:
        pieces.append(rest)
    return pieces


def frame(label: str, lines: list[str], width: int) -> list[str]:
    """The lines in a box `width` columns wide, labelled at the top; long lines wrapped, never past the edge."""
    inner = width - 4
    top = f"┌─ {wrap(label, width - 6)[0]} "
    rows = [top + "─" * max(width - 1 - display_width(top), 0) + "┐"]
    for line in lines:
        for piece in wrap(line, inner):
            rows.append(f"│ {piece}{' ' * (inner - display_width(piece))} │")
    rows.append("└" + "─" * (width - 2) + "┘")
    return rows
