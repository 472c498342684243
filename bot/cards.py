"""Turn a Reply into a Card through the Jinja2 templates, escaping every value for DingTalk markdown."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from bot.commands import command_text
from bot.models import Action, Button, Card, Reply


def _templates_dir() -> Path:
    """bot/templates in an installed package; the repository's top-level templates/ in a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


TEMPLATES_DIR = _templates_dir()
MAX_ECHO_LENGTH = 80
TITLE_LIMIT = 64  # DingTalk rejects longer card titles (errcode 34016)
BUTTON_TITLE_LIMIT = 20
MAX_BUTTONS = 5  # the robot OpenAPI's largest ActionCard (sampleActionCard5) has five; more become links
SEND_AS_USER = "dtmd://dingtalkclient/sendMessage?content="  # the host must be lower case or clients ignore it
BUTTON_LABELS = {
    "en": {"unsubscribe": "Unsubscribe {}", "resubscribe": "↩ Undo: {}"},
    "zh_CN": {"unsubscribe": "取消订阅 {}", "resubscribe": "↩ 撤销：{}"},
}

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]()#!|~])")
# A zero-width space after these keeps clients from turning echoed text into a link or an @mention.
_LINK_AND_MENTION_STARTS = re.compile(r"(://|www\.|@)", re.IGNORECASE)
_ZERO_WIDTH_SPACE = "\u200b"


def escape_markdown(value: Any) -> str:
    """Make any value render as plain text in DingTalk markdown: no formatting, link, image, tag or mention."""
    text = str(value)
    if not text.isprintable():  # the common case skips the per-character pass
        text = "".join(_visible(char) for char in text)
    if len(text) > MAX_ECHO_LENGTH:
        text = text[: MAX_ECHO_LENGTH - 1] + "…"
    text = _MARKDOWN_SPECIALS.sub(r"\\\1", text)
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return _LINK_AND_MENTION_STARTS.sub(lambda match: match.group(1) + _ZERO_WIDTH_SPACE, text)


def _visible(char: str) -> str:
    if char in "\r\n\t":
        return " "
    # Control and format characters (including bidi overrides and zero-width ones) could hide or reorder text.
    return "\ufffd" if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") else char


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
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


def render(reply: Reply, locale: str) -> Card:
    """Render the reply's outcome template in the locale: first line the title, the whole text the body;
    actions become buttons, or links in the body when there are more than a card can hold."""
    template = _ENVIRONMENT.get_template(f"{locale}/{reply.outcome}.md.j2")
    markdown = template.render(reply.data).strip()
    title = markdown.splitlines()[0].lstrip("#").strip()[:TITLE_LIMIT]
    if len(reply.actions) > MAX_BUTTONS:
        links = "\n".join(
            f"- [{escape_markdown(_label(a, locale))}]({_send_as_user(a, locale)})" for a in reply.actions
        )
        return Card(title, f"{markdown}\n\n{links}", (), interactive=True)
    buttons = tuple(button(action, locale) for action in reply.actions)
    return Card(title, markdown, buttons, interactive=bool(buttons))


def button(action: Action, locale: str) -> Button:
    """A button that sends the action's command as the user, exactly as they would type it."""
    title = _label(action, locale)
    if len(title) > BUTTON_TITLE_LIMIT:
        title = title[: BUTTON_TITLE_LIMIT - 1] + "…"
    return Button(title, _send_as_user(action, locale))


def _label(action: Action, locale: str) -> str:
    calendar = "".join(_visible(char) for char in (action.name or action.calendar_id))
    return BUTTON_LABELS[locale][action.command].format(calendar)


def _send_as_user(action: Action, locale: str) -> str:
    return SEND_AS_USER + quote(command_text(action.command, action.calendar_id, locale), safe="")


def outcomes(locale: str) -> list[str]:
    """The outcome names that have a template in this locale."""
    return sorted(path.name.removesuffix(".md.j2") for path in (TEMPLATES_DIR / locale).glob("[!_]*.md.j2"))
