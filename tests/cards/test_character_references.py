"""Hostile calendar names and ids through the real `python -m bot`: nothing a publisher writes becomes a
link, a mention, markdown or HTML in the card as a client shows it, and each button acts on exactly its calendar."""

from __future__ import annotations

import re
from urllib.parse import unquote

import markdown_it

from bot.cards.render import MAX_ECHO_LENGTH, escape_markdown
from bot.commands.parse import parse, split_targets
from tests.helpers import (
    SEND_AS_USER,
    buttons,
    card,
    converse,
    new_user,
    running_process,
    started_sandbox,
)

_MARKDOWN = markdown_it.MarkdownIt("commonmark")
# a link or mention start, as the text a client shows (after markdown and its entities), not followed by the ZWSP
_LIVE_START = re.compile(r"(://|www\.|@)(?!\u200b)", re.IGNORECASE)

# names spelling a link or mention start with HTML's named character references: markdown shows them as the
# characters, so the zero-width space never lands after them
ENTITY_SPELLED = [
    "https&colon;//evil&period;example/login",
    "www&period;evil&period;example",
    "&commat;all",
]


def shown_text(markdown: str) -> str:
    """The text a client shows for this markdown (tags dropped, entities decoded)."""
    import html

    return html.unescape(re.sub(r"<[^>]*>", "", _MARKDOWN.render(markdown)))


def test_an_entity_spelled_link_or_mention_is_no_live_link_once_shown() -> None:
    for name in ENTITY_SPELLED:
        shown = shown_text(f"**{escape_markdown(name)}**")
        assert _LIVE_START.search(shown) is None, (name, shown)
        assert "&" in shown and name.split("&")[0] in shown  # and the text is shown as written


def test_an_ampersand_is_shown_as_written() -> None:
    for name in ("R&D", "R&amp;D", "&lt;b&gt;", "AT&T", "&#64;all", "a & b"):
        assert shown_text(escape_markdown(name)).strip() == name


HOSTILE_NAMES = [
    *ENTITY_SPELLED,
    "**bold** _it_ `code` ~~s~~ # h > q | t",
    "[click](https://evil.example) ![i](x)",
    "<font color=red>red</font><a href=x>a</a>",
    "@all @13800000000 mail a@b.example",
    "HTTP://EVIL.example WWW.evil.example",
    "ｈｔｔｐｓ：／／ｅｖｉｌ．ｅｘａｍｐｌｅ ＠ａｌｌ ［ｘ］（ｙ）",
    "zero\u200bwidth\u200d bidi\u202eevil\u2066 x",
    "line\nbreak\r\n# heading\u2028- item",
    "x" * (MAX_ECHO_LENGTH - 1) + "*",
    "y" * (MAX_ECHO_LENGTH + 5) + "[z](w)",
]
HOSTILE_IDS = [
    'a", "b',
    'q""q',
    "id with space, and comma，、",
    "%2F..%00",
    "@all",
    "https://evil.example",
    "zh中文✓",
]


async def test_hostile_names_and_ids_in_a_list_card_through_the_real_bot() -> None:
    async with started_sandbox() as sandbox, running_process(sandbox, {"LOG_LEVEL": "DEBUG"}):
        for index, name in enumerate(HOSTILE_NAMES):
            user = new_user(sandbox)
            calendar_id = HOSTILE_IDS[index % len(HOSTILE_IDS)]
            sandbox.add_calendar(calendar_id, name)
            sandbox.subscribe(user.union_id, calendar_id)
            _, reply = await converse(sandbox, sandbox.chat("list", user.staff_id))
            shown = card(reply)
            text = shown_text(shown["text"])
            assert _LIVE_START.search(text) is None, (name, text)
            assert "<font" not in _MARKDOWN.render(shown["text"]).replace("<font color=#8c8c8c>", "")
            [button] = buttons(reply)
            command = parse(unquote(button["actionURL"].removeprefix(SEND_AS_USER)), "en")
            assert command.name == "unsubscribe"
            targets = split_targets(command.argument)
            assert targets is not None and [(t.text, t.exact) for t in targets] == [(calendar_id, True)], name
