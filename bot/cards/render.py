"""Turn a Reply into a Card through the Jinja2 templates, escaping every value for DingTalk markdown."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any
from urllib.parse import quote

import jinja2
import orjson

from bot.commands.parse import command_text, quote_target
from bot.models import Action, Button, Card, Reply
from bot.template_files import TEMPLATES_DIR, templates_in_memory

MAX_ECHO_LENGTH = 80
TITLE_LIMIT = 64  # DingTalk rejects longer card titles (errcode 34016)
MARKDOWN_LIMIT = 5_000  # DingTalk rejects longer markdown (errcode 34016)
# Room for the @mention a group reply appends to the text ("\n\n@" and a staff id of up to 64 characters).
MARKDOWN_BUDGET = MARKDOWN_LIMIT - 100
MSG_PARAM_LIMIT = 15_000  # bytes of the robot OpenAPI's msgParam JSON (UTF-8: a CJK character is 3 bytes)
_MSG_PARAM_FIELD_BYTES = 40  # per field: its key ("actionTitle5"), quotes, colon and comma, generously
BUTTON_TITLE_LIMIT = 20
BUTTON_URL_LIMIT = 500  # DingTalk rejects a longer button link (errcode 34016); a markdown link has no such limit
BUTTON_LIST_LIMIT = 1_000  # characters of the buttons as DingTalk's btn_json_list (errcode 34016)
MAX_LISTED = 50  # calendars or actions one card shows at most; beyond, it says how many more
MAX_BUTTONS = 5  # the robot OpenAPI's largest ActionCard (sampleActionCard5) has five; more become links
SEND_AS_USER = "dtmd://dingtalkclient/sendMessage?content="  # the host must be lower case or clients ignore it
BUTTON_LABELS = {
    "en": {
        "unsubscribe": "Unsubscribe {}",
        "resubscribe": "↩ Undo: {}",
        "confirm": "✅ Confirm ({})",
        "undo": "↩ Undo all ({})",
    },
    "zh_CN": {
        "unsubscribe": "取消订阅 {}",
        "resubscribe": "↩ 撤销：{}",
        "confirm": "✅ 确认（{} 个）",
        "undo": "↩ 全部撤销（{} 个）",
    },
}

# Outcomes whose body numbers the offered calendars in the order of their actions, so numbered buttons match it.
LISTS_ITS_ACTIONS = frozenset({"calendars", "ambiguous", "no_match"})

# Markdown's specials get a backslash, and a tag's brackets become entities; so does "&", or a character reference
# (&colon; &period; &commat; &ast; …) would show as the character it names: a link or mention start no zero-width
# space follows, once the client has decoded it.
_ESCAPES = str.maketrans({**{char: "\\" + char for char in "\\`*_[]()#!|~"}, "<": "&lt;", ">": "&gt;", "&": "&amp;"})
# A zero-width space after these keeps clients from turning echoed text into a link or an @mention.
_LINK_AND_MENTION_STARTS = re.compile(r"(://|www\.|@)", re.IGNORECASE)
_ZERO_WIDTH_SPACE = "\u200b"
# Every character either step above acts on (a link or mention start holds ":", "." or "@"). Most values (ids,
# request ids, plain names) hold none: one search of this class costs about a twentieth of the two steps.
_ESCAPED_OR_LINK_CHARS = re.compile(r"[\\`*_\[\]()#!|~<>&:.@]")


def escape_markdown(value: Any) -> str:
    """Make any value render as plain text in DingTalk markdown: no formatting, link, image, tag or mention."""
    text = str(value)
    if len(text) > MAX_ECHO_LENGTH:  # first, so a long text costs no more than a short one
        text = text[: MAX_ECHO_LENGTH - 1] + "…"
    if not text.isprintable():  # the common case skips the per-character pass (one character for one)
        text = "".join(_visible(char) for char in text)
    if _ESCAPED_OR_LINK_CHARS.search(text) is None:  # nothing to escape: the common case
        return text
    text = text.translate(_ESCAPES)
    return _LINK_AND_MENTION_STARTS.sub(lambda match: match.group(1) + _ZERO_WIDTH_SPACE, text)


# Every character that can end a line or paragraph (str.splitlines' set: Zl, Zp, NEL, VT, FF, FS, GS, RS).
_LINE_BREAKS = frozenset("\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _visible(char: str) -> str:
    if char in _LINE_BREAKS:
        return " "
    # Control and format characters (including bidi overrides and zero-width ones) could hide or reorder text.
    return "\ufffd" if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") else char


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=templates_in_memory(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        # Every {{ expression }} is escaped: a template cannot forget to, and user text is never a template.
        finalize=escape_markdown,
        autoescape=False,  # noqa: S701 - HTML escaping is wrong for markdown; finalize escapes instead
        keep_trailing_newline=False,
        auto_reload=False,  # templates do not change while the bot runs: no stat() per card
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENVIRONMENT = _environment()
# The cards use none of Jinja's globals (range, namespace, …) and are rendered with their data as the whole context
# (see _render): without globals no template can reach one by mistake.
_ENVIRONMENT.globals.clear()


def render(reply: Reply, locale: str) -> Card:
    """Render the reply's outcome template in the locale: first line the title, the whole text the body; actions
    become buttons, or links in the body when there are more than a card can hold (or a link too long for one).
    A card too big for DingTalk shows the first calendars and actions that fit and says how many more there are."""
    template = _template(locale, reply.outcome)
    shown = min(MAX_LISTED, max(len(reply.actions), len(reply.data.get("calendars") or ())))
    card = _render(template, reply, locale, shown)
    while (overflow := _overflow(card)) > 1 and shown > 0:
        # Calendars cost about the same each: shrink in proportion, so that a few renders suffice.
        shown = min(shown - 1, int(shown / overflow))
        card = _render(template, reply, locale, shown)
    return card if overflow <= 1 else _cut(card)


@functools.lru_cache(maxsize=256)  # every outcome in every locale: about 70
def _template(locale: str, outcome: str) -> jinja2.Template:
    """The outcome's template, compiled once: Jinja's own cache takes a lock and checks the template is current
    each time (no template changes while the bot runs)."""
    return _ENVIRONMENT.get_template(f"{locale}/{outcome}.md.j2")


def _render(template: jinja2.Template, reply: Reply, locale: str, shown: int) -> Card:
    data, actions = reply.data, reply.actions[:shown]
    calendars = data.get("calendars")
    more = len(reply.actions) - len(actions)
    if calendars and len(calendars) > shown:
        data = {**data, "calendars": calendars[:shown]}
        more = max(more, len(calendars) - shown)
    markdown = _markdown(template, {**data, "more": more}).strip()
    # the first line as splitlines() has it, without splitting the rest of the card
    title = markdown.partition("\n")[0].splitlines()[0].lstrip("#").strip()[:TITLE_LIMIT]
    if not actions:
        return Card(title, markdown)
    urls = [_send_as_user(action, locale) for action in actions]
    as_links = len(actions) > MAX_BUTTONS or any(len(url) > BUTTON_URL_LIMIT for url in urls)
    labels = [_label(action, locale) for action in actions]
    shown_labels = labels if as_links else [_shorten(label) for label in labels]
    numbered = len(shown_labels) > 1 and len({_looks(label) for label in shown_labels}) < len(shown_labels)
    if numbered:
        # Labels a user cannot tell apart get numbers first; the body says what each number is.
        shown_labels = [f"{number}. {label}" for number, label in enumerate(labels, start=1)]
        if not as_links:
            shown_labels = [_shorten(label) for label in shown_labels]
    if not as_links and button_list_length(shown_labels, urls) > BUTTON_LIST_LIMIT:
        as_links = True  # links in the body instead: their labels need not be short
        shown_labels = [f"{number}. {label}" for number, label in enumerate(labels, start=1)] if numbered else labels
    if numbered and reply.outcome not in LISTS_ITS_ACTIONS:
        markdown = f"{markdown}\n\n{_legend(actions, labels)}"
    if as_links:
        links = "\n".join(f"- [{escape_markdown(label)}]({url})" for label, url in zip(shown_labels, urls, strict=True))
        return Card(title, f"{markdown}\n\n{links}", (), interactive=True)
    buttons = tuple(Button(label, url) for label, url in zip(shown_labels, urls, strict=True))
    return Card(title, markdown, buttons, interactive=True)


def _markdown(template: jinja2.Template, values: dict[str, Any]) -> str:
    """What template.render(values) gives, in a context that is `values` itself (Jinja's `shared`): render() first
    copies them into a new dict with Jinja's globals, which cost more than the template's own code. Every value still
    goes through the environment's finalize (escape_markdown)."""
    context = template.new_context(values, shared=True)
    try:
        return _ENVIRONMENT.concat(template.root_render_func(context))
    except Exception:
        _ENVIRONMENT.handle_exception()  # raises it, its traceback pointing at the template's lines, as render() does


def button_list_length(titles: list[str], urls: list[str]) -> int:
    """Characters of the buttons as DingTalk's btn_json_list (compact JSON, text as written, not \\u-escaped), or a
    bound on them when even the bound is within the limit."""
    # No character takes more than 6 in JSON (links are percent-encoded): the common card needs no dump to know.
    bound = 2 + sum(30 + 6 * len(title) + 6 * len(url) for title, url in zip(titles, urls, strict=True))
    if bound <= BUTTON_LIST_LIMIT:
        return bound
    buttons = [{"title": title, "actionURL": url} for title, url in zip(titles, urls, strict=True)]
    return len(json.dumps(buttons, ensure_ascii=False, separators=(",", ":")))


def _looks(label: str) -> str:
    """What a reader tells two labels apart by: not case, spacing or full-width forms (the resolver ignores case and
    surrounding space too, so two calendars it calls the same never get buttons that read the same)."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def _legend(actions: tuple[Action, ...], labels: list[str]) -> str:
    return "\n".join(
        f"{number}. {escape_markdown(label)} · {escape_markdown(action.calendar_id)}"
        for number, (label, action) in enumerate(zip(labels, actions, strict=True), start=1)
    )


def _overflow(card: Card) -> float:
    """How many times too big the card is for DingTalk (at most 1 when it fits): its markdown, and the robot
    OpenAPI's msgParam (title, text and buttons as JSON, counted in UTF-8 bytes)."""
    fields = [card.title, card.markdown, *(b.title for b in card.buttons), *(b.url for b in card.buttons)]
    overhead = _MSG_PARAM_FIELD_BYTES * len(fields)
    size = sum(map(len, fields)) * 6 + overhead  # no character takes more than 6 bytes in JSON
    if size > MSG_PARAM_LIMIT:
        size = len(orjson.dumps(fields)) + overhead
    return max(len(card.markdown) / MARKDOWN_BUDGET, size / MSG_PARAM_LIMIT)


def _cut(card: Card) -> Card:
    """The last resort when even the card's fixed lines are too long: drop lines from the end, say so."""
    lines = card.markdown.split("\n")
    while _overflow(shorter := Card(card.title, "\n".join(lines) + "\n\n…", card.buttons, card.interactive)) > 1:
        if len(lines) > 1:
            lines.pop()
        else:
            lines[0] = lines[0][: len(lines[0]) // 2]
    return shorter


def _shorten(title: str) -> str:
    return title if len(title) <= BUTTON_TITLE_LIMIT else title[: BUTTON_TITLE_LIMIT - 1].rstrip() + "…"


def _label(action: Action, locale: str) -> str:
    calendar = (action.name or action.calendar_id)[:MAX_ECHO_LENGTH]
    if not calendar.isprintable():  # as in escape_markdown: a printable text is already what _visible makes of it
        calendar = "".join(_visible(char) for char in calendar)
    return BUTTON_LABELS[locale][action.command].format(calendar)


def _send_as_user(action: Action, locale: str) -> str:
    """SEND_AS_USER and the command's text, percent-encoded. quote() encodes each character on its own, so the text
    is encoded in parts: the words around the id once per command and locale, and the id, which without its quotes
    is mostly characters quote() passes through whole (the quotes made it encode every byte of the text, one by
    one). The same as quote(command_text(…)): tests/cards/test_render.py checks it."""
    before, after = _link_around_id(action.command, locale)
    return before + quote(quote_target(action.calendar_id)[1:-1], safe="") + after


@functools.cache
def _link_around_id(command: str, locale: str) -> tuple[str, str]:
    text = command_text(command, "", locale)  # the words, then the empty id quoted: `""`
    return SEND_AS_USER + quote(text[:-1], safe=""), quote(text[-1], safe="")


def outcomes(locale: str) -> list[str]:
    """The outcome names that have a template in this locale."""
    return sorted(path.name.removesuffix(".md.j2") for path in (TEMPLATES_DIR / locale).glob("[!_]*.md.j2"))


def button_label(action: Action, locale: str) -> str:
    """The button text of one action, as short as a card button shows it (an interactive card's rows too)."""
    return _shorten(_label(action, locale))
