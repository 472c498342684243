"""Templates and markdown escaping: every outcome renders in every locale; user text stays plain text."""

from __future__ import annotations

import re
from typing import Any

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import cards
from bot.config import LOCALES
from bot.models import Action, Button, Reply

SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "help": {"understood": False},
    "unsubscribed": {"calendar_id": "cal-1", "name": "Holidays", "request_id": "R1"},
    "calendar_id_missing": {"code": "invalidParameter", "request_id": "R1"},
    "invalid_calendar_id": {"calendar_id": "..", "problem": "dot_segment"},
    "not_in_scope": {"calendar_id": "cal-1", "code": "permissionDenied", "request_id": "R1"},
    "not_subscribable": {"calendar_id": "cal-1", "code": "invalidParameter", "request_id": "R1"},
    "unknown_calendar": {"calendar_id": "cal-1", "code": "invalidParameter", "request_id": "R1"},
    "app_lacks_permission": {"calendar_id": "cal-1", "code": "Forbidden", "request_id": "R1", "scopes": ["A.B"]},
    "temporary_problem": {"calendar_id": "cal-1", "code": "HTTP503", "request_id": "R1"},
    "foreign_sender": {},
    "sender_unknown": {"code": "60121", "request_id": "R1"},
    "dingtalk_error": {"calendar_id": "cal-1", "code": "X", "request_id": "R1", "message": "m"},
    "internal_error": {},
    "resubscribed": {"calendar_id": "cal-1", "request_id": "R1"},
    "subscribe_limit": {"calendar_id": "cal-1", "code": "exceedSubscribeLimit", "request_id": "R1"},
    "calendars": {"calendars": [{"id": "cal-1", "name": "公司假期"}, {"id": "cal-2", "name": ""}]},
    "no_calendars": {},
    "slow_down": {},
    "busy": {},
    "ambiguous": {
        "text": "Holidays",
        "calendars": [{"id": "cal-1", "name": "Holidays"}, {"id": "cal-2", "name": "Holidays"}],
    },
    "no_match": {"text": "x y", "calendars": [{"id": "cal-1", "name": "Holidays"}]},
    "sent_privately": {"title": "✅ Unsubscribed"},
    "batch": {
        "items": [
            {"outcome": "unsubscribed", "calendar_id": "cal-1", "name": "Holidays", "request_id": "R1"},
            {"outcome": "not_in_scope", "calendar_id": "cal-2", "code": "permissionDenied", "request_id": "R2"},
            {"outcome": "no_match", "text": "x y", "calendars": []},
            {"outcome": "temporary_problem", "calendar_id": "cal-3", "code": "HTTP503", "request_id": "R3"},
        ]
    },
}


def test_every_locale_has_the_same_outcomes_and_each_has_sample_data() -> None:
    assert cards.outcomes("en") == cards.outcomes("zh_CN") == sorted(SAMPLE_DATA)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("outcome", sorted(SAMPLE_DATA))
def test_every_outcome_renders_in_every_locale(outcome: str, locale: str) -> None:
    card = cards.render(Reply(outcome, SAMPLE_DATA[outcome]), locale)

    assert card.title and len(card.title) <= cards.TITLE_LIMIT and "#" not in card.title
    assert card.markdown.startswith("### ") and len(card.markdown) < 5000
    if "request_id" in SAMPLE_DATA[outcome]:
        assert "R1" in card.markdown


@pytest.mark.parametrize("outcome", sorted(outcome for outcome, data in SAMPLE_DATA.items() if data))
def test_a_missing_variable_fails_loudly(outcome: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        cards.render(Reply(outcome, {}), "en")


def test_actions_become_buttons_that_send_the_command_as_the_user() -> None:
    reply = Reply("unsubscribed", SAMPLE_DATA["unsubscribed"], (Action("resubscribe", "cal-1", "Holidays"),))

    assert cards.render(reply, "en").buttons == (
        Button("↩ Undo: Holidays", "dtmd://dingtalkclient/sendMessage?content=resubscribe%20cal-1"),
    )
    assert cards.render(reply, "zh_CN").buttons == (
        Button(
            "↩ 撤销：Holidays", "dtmd://dingtalkclient/sendMessage?content=%E9%87%8D%E6%96%B0%E8%AE%A2%E9%98%85%20cal-1"
        ),
    )


def test_more_actions_than_a_card_holds_become_links_in_the_body() -> None:
    actions = tuple(Action("unsubscribe", f"cal/{n}", f"[Name {n}](x)") for n in range(6))
    card = cards.render(Reply("calendars", {"calendars": []}, actions), "en")

    assert card.buttons == () and card.interactive
    assert (
        "- [Unsubscribe \\[Name 0\\]\\(x\\)](dtmd://dingtalkclient/sendMessage?content=unsubscribe%20cal%2F0)"
        in card.markdown
    )


def test_a_long_button_title_is_shortened_and_loses_invisible_characters() -> None:
    [button] = cards.render(
        Reply("no_calendars", {}, (Action("unsubscribe", "c", "A\u202e" + "x" * 30),)), "en"
    ).buttons
    assert button.title == "Unsubscribe A\ufffdxxxxx…" and len(button.title) == cards.BUTTON_TITLE_LIMIT


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("cal-holidays", "cal-holidays"),
        ("**bold** _it_ `code`", r"\*\*bold\*\* \_it\_ \`code\`"),
        ("[x](y) ![i](j)", r"\[x\]\(y\) \!\[i\]\(j\)"),
        ("# h | t ~ \\", r"\# h \| t \~ \\"),
        ("<img src=x>", "&lt;img src=x&gt;"),
        ("a\nb\r\nc", "a b  c"),
        ("https://evil.example", "https://\u200bevil.example"),
        ("www.evil.example", "www.\u200bevil.example"),
        ("@all", "@\u200ball"),
        ("a\u202eb\u0000", "a\ufffdb\ufffd"),
        ("{{7*7}}", r"{{7\*7}}"),
        ("x" * 100, "x" * 79 + "…"),
    ],
)
def test_escape_markdown(value: str, escaped: str) -> None:
    assert cards.escape_markdown(value) == escaped


def test_user_text_is_never_evaluated_as_a_template() -> None:
    card = cards.render(
        Reply("not_in_scope", {"calendar_id": "{{ 7*7 }}{% if 1 %}x{% endif %}", "code": "c", "request_id": "r"}), "en"
    )
    assert "49" not in card.markdown and "{{ 7\\*7 }}{% if 1 %}x{% endif %}" in card.markdown


_UNESCAPED_SPECIAL = re.compile(r"(?<!\\)[*_\[\]()`#!|~<>]")


@given(st.text())
def test_escaped_text_has_no_live_markdown(value: str) -> None:
    escaped = cards.escape_markdown(value)
    unbackslashed = escaped.replace("\\\\", "")
    assert _UNESCAPED_SPECIAL.search(unbackslashed) is None
    assert "\n" not in escaped and "://" not in escaped and "<" not in escaped
    assert re.search(r"@[^\u200b]", escaped) is None


@given(st.text(), st.sampled_from(LOCALES))
def test_any_calendar_id_renders_in_every_card(value: str, locale: str) -> None:
    for outcome in ("unsubscribed", "not_in_scope", "invalid_calendar_id", "temporary_problem"):
        data = {**SAMPLE_DATA[outcome], "calendar_id": value}
        card = cards.render(Reply(outcome, data), locale)
        assert card.markdown.count("**") % 2 == 0
