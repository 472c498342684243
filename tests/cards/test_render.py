"""Templates and markdown escaping: every outcome renders in every locale; user text stays plain text."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cards import render as cards
from bot.commands.parse import COMMAND_WORDS, command_text
from bot.config import LOCALES
from bot.models import Action, Button, Card, Outcome, Reply

SEND_AS_USER = "dtmd://dingtalkclient/sendMessage?content="
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "help": {"understood": False, "admin": False},
    "unsubscribed": {"calendar_id": "cal-1", "name": "Holidays", "request_id": "R1"},
    "calendar_id_missing": {"code": "invalidParameter", "request_id": "R1"},
    "invalid_calendar_id": {"calendar_id": "..", "problem": "dot_segment"},
    "not_in_scope": {"calendar_id": "cal-1", "name": "Holidays", "code": "permissionDenied", "request_id": "R1"},
    "not_subscribable": {"calendar_id": "cal-1", "name": "Holidays", "code": "invalidParameter", "request_id": "R1"},
    "unknown_calendar": {"calendar_id": "cal-1", "name": "Holidays", "code": "invalidParameter", "request_id": "R1"},
    "app_lacks_permission": {"calendar_id": "cal-1", "code": "Forbidden", "request_id": "R1", "scopes": ["A.B"]},
    "temporary_problem": {"calendar_id": "cal-1", "name": "Holidays", "code": "HTTP503", "request_id": "R1"},
    "foreign_sender": {},
    "sender_unknown": {"code": "60121", "request_id": "R1"},
    "dingtalk_error": {"calendar_id": "cal-1", "name": "Holidays", "code": "X", "request_id": "R1", "message": "m"},
    "internal_error": {},
    "resubscribed": {"calendar_id": "cal-1", "name": "Holidays", "request_id": "R1"},
    "subscribe_limit": {"calendar_id": "cal-1", "name": "Holidays", "code": "exceedSubscribeLimit", "request_id": "R1"},
    "calendars": {"calendars": [{"id": "cal-1", "name": "公司假期"}, {"id": "cal-2", "name": ""}]},
    "connect_account": {},  # its one button, the authorize link, is added outside the template
    "disconnected": {"user_tokens": True, "had_grant": True},
    "no_calendars": {},
    "slow_down": {},
    "busy": {},
    "ambiguous": {
        "text": "Holidays",
        "calendars": [{"id": "cal-1", "name": "Holidays"}, {"id": "cal-2", "name": "Holidays"}],
    },
    "no_match": {"text": "x y", "calendars": [{"id": "cal-1", "name": "Holidays"}], "code": "X", "request_id": "R1"},
    "org_quota_exhausted": {
        "calendar_id": "cal-1",
        "code": "Forbidden.AccessDenied.ApiCountLimitForOrg",
        "request_id": "R1",
    },
    "app_not_ready": {"calendar_id": "cal-1", "code": "suiteTicketMissing", "request_id": "R1"},
    "org_not_authorized": {"calendar_id": "cal-1", "code": "invalidAuthInfo", "request_id": "R1"},
    "too_many_calendars": {"limit": 20},
    "sent_privately": {"title": "✅ Unsubscribed"},
    "whoami": {
        "staff_id": "s1",
        "union_id": "u1",
        "lookup_code": "",
        "sender_corp_id": "ding1",
        "bot_corp_id": "ding1",
        "member": True,
        "group": True,
        "admin": False,
        "version": "0.1.0",
        "region": "cn",
        "internal_app": True,
    },
    "bulk_preview": {
        "pattern": "Team*",
        "count": 2,
        "matched": 3,
        "calendars": [{"id": "cal-1", "name": "Team A"}, {"id": "cal-2", "name": "团队"}],
        "minutes": 10,
    },
    "bulk_expired": {"kind": "undo"},
    "admins_only": {"command": "stats"},
    "audit": {
        "subject": "cal-1",
        "entries": [
            {
                "when": "2026-11-27 08:00:00 UTC",
                "staff_id": "s1",
                "action": "unsubscribe",
                "calendar": "Holidays",
                "result": "unsubscribed",
                "code": "",
                "request_id": "R1",
            }
        ],
    },
    "stats": {
        "started_at": "2026-11-27 08:00 UTC",
        "day": "2026-11-27",
        "since_start": {
            "commands": 2,
            "outcomes": [("help", 1), ("unsubscribed", 1)],
            "codes": [("HTTP503", 1)],
            "p50_ms": 3.0,
            "p99_ms": 12.4,
            "retries": 1,
            "duplicates": 0,
            "reconnects": 0,
            "api_calls": 4,
            "quota_calls": 3,
            "api_calls_by_api": [("accessToken", 1), ("calendars", 3)],
        },
        "today": {
            "commands": 0,
            "outcomes": [],
            "codes": [],
            "p50_ms": 0.0,
            "p99_ms": 0.0,
            "retries": 0,
            "duplicates": 0,
            "reconnects": 0,
            "api_calls": 0,
            "quota_calls": 0,
            "api_calls_by_api": [],
        },
    },
    "batch": {
        "items": [
            {"outcome": "unsubscribed", "calendar_id": "cal-1", "name": "Holidays", "request_id": "R1"},
            {"outcome": "not_in_scope", "calendar_id": "cal-2", "code": "permissionDenied", "request_id": "R2"},
            {"outcome": "no_match", "text": "x y", "calendars": []},
            {"outcome": "temporary_problem", "calendar_id": "cal-3", "code": "HTTP503", "request_id": "R3"},
            {"outcome": "org_quota_exhausted", "calendar_id": "cal-4", "code": "Forbidden", "request_id": "R4"},
        ]
    },
}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_outcome_has_a_template_in_every_locale_and_sample_data(locale: str) -> None:
    assert cards.outcomes(locale) == sorted(Outcome) == sorted(SAMPLE_DATA)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_renders_in_every_locale(outcome: Outcome, locale: str) -> None:
    card = cards.render(Reply(outcome, SAMPLE_DATA[outcome]), locale)

    assert card.title and len(card.title) <= DINGTALK_TITLE_LIMIT and "#" not in card.title
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
        Button("↩ Undo: Holidays", "dtmd://dingtalkclient/sendMessage?content=resubscribe%20%22cal-1%22"),
    )
    assert cards.render(reply, "zh_CN").buttons == (
        Button(
            "↩ 撤销：Holidays",
            "dtmd://dingtalkclient/sendMessage?content=%E9%87%8D%E6%96%B0%E8%AE%A2%E9%98%85%20%22cal-1%22",
        ),
    )


@given(st.lists(st.one_of(st.characters(), st.sampled_from('"% /'))).map("".join))
def test_a_button_link_is_the_command_text_percent_encoded(calendar_id: str) -> None:
    # the link is encoded in parts (the words once, then the id): the same as encoding the whole text
    for locale, words in COMMAND_WORDS.items():
        for command in words:
            link = cards._send_as_user(Action(command, calendar_id, ""), locale)
            assert link == cards.SEND_AS_USER + quote(command_text(command, calendar_id, locale), safe="")


def test_more_actions_than_a_card_holds_become_links_in_the_body() -> None:
    actions = tuple(Action("unsubscribe", f"cal/{n}", f"[Name {n}](x)") for n in range(6))
    card = cards.render(Reply("calendars", {"calendars": []}, actions), "en")

    assert card.buttons == () and card.interactive
    assert (
        "- [Unsubscribe \\[Name 0\\]\\(x\\)](dtmd://dingtalkclient/sendMessage?content=unsubscribe%20%22cal%2F0%22)"
        in card.markdown
    )


def test_a_long_button_title_is_shortened_and_loses_invisible_characters() -> None:
    [button] = cards.render(
        Reply("no_calendars", {}, (Action("unsubscribe", "c", "A\u202e" + "x" * 30),)), "en"
    ).buttons
    assert button.title == "Unsubscribe A\ufffdxxxxx…" and len(button.title) == DINGTALK_BUTTON_TITLE_LIMIT


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
        ("WWW.Evil.example", "WWW.\u200bEvil.example"),
        ("v1.2: a@b", "v1.2: a@\u200bb"),
        ("@all", "@\u200ball"),
        ("a\u202eb\u0000", "a\ufffdb\ufffd"),
        ("a\u2028b\u2029c\u0085d\u000be\u000cf\u001cg", "a b c d e f g"),
        ("{{7*7}}", r"{{7\*7}}"),
        ("x" * 100, "x" * 79 + "…"),
    ],
)
def test_escape_markdown(value: str, escaped: str) -> None:
    assert cards.escape_markdown(value) == escaped


def test_user_text_is_never_evaluated_as_a_template() -> None:
    card = cards.render(
        Reply(
            "not_in_scope",
            {"calendar_id": "{{ 7*7 }}{% if 1 %}x{% endif %}", "name": "", "code": "c", "request_id": "r"},
        ),
        "en",
    )
    assert "49" not in card.markdown and "{{ 7\\*7 }}{% if 1 %}x{% endif %}" in card.markdown


_UNESCAPED_SPECIAL = re.compile(r"(?<!\\)[*_\[\]()`#!|~<>]")


# Line and paragraph separators (Zl, Zp and the controls str.splitlines breaks on) mixed into any text.
_LINE_BREAKERS = "\n\r\u2028\u2029\u0085\u000b\u000c\u001c\u001d\u001e"
_ANY_TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(_LINE_BREAKERS))).map("".join)


@given(_ANY_TEXT)
def test_escaped_text_has_no_live_markdown(value: str) -> None:
    escaped = cards.escape_markdown(value)
    unbackslashed = escaped.replace("\\\\", "")
    assert _UNESCAPED_SPECIAL.search(unbackslashed) is None
    assert "://" not in escaped and "<" not in escaped
    assert not any(char in escaped for char in _LINE_BREAKERS) and len(escaped.splitlines()) <= 1
    assert re.search(r"@[^\u200b]", escaped) is None


@given(_ANY_TEXT, st.sampled_from(LOCALES))
def test_any_calendar_id_renders_in_every_card(value: str, locale: str) -> None:
    for outcome in ("unsubscribed", "not_in_scope", "invalid_calendar_id", "temporary_problem"):
        data = {**SAMPLE_DATA[outcome], "calendar_id": value}
        card = cards.render(Reply(outcome, data), locale)
        assert card.markdown.count("**") % 2 == 0


def test_two_calendars_whose_labels_look_alike_get_numbered_buttons_that_the_body_explains() -> None:
    same = "Team Offsite East Coast"
    calendars = [{"id": "cal-east", "name": same}, {"id": "cal-west", "name": same}]
    actions = (Action("unsubscribe", "cal-east", same), Action("unsubscribe", "cal-west", same))

    card = cards.render(Reply("ambiguous", {"text": "Team Offsite", "calendars": calendars}, actions), "en")

    assert [b.title for b in card.buttons] == ["1. Unsubscribe Team…", "2. Unsubscribe Team…"]
    assert "1. **Team Offsite East Coast** · cal-east" in card.markdown
    assert "2. **Team Offsite East Coast** · cal-west" in card.markdown
    assert all(len(b.title) <= DINGTALK_BUTTON_TITLE_LIMIT for b in card.buttons)


def test_look_alike_buttons_on_a_card_that_does_not_list_them_get_a_legend() -> None:
    items = [
        {"outcome": "unsubscribed", "calendar_id": f"cal-{n}", "name": "Company Holidays", "request_id": "R"}
        for n in (1, 2)
    ]
    actions = (Action("resubscribe", "cal-1", "Company Holidays"), Action("resubscribe", "cal-2", "Company Holidays"))

    card = cards.render(Reply("batch", {"items": items}, actions), "en")

    assert [b.title for b in card.buttons] == ["1. ↩ Undo: Company…", "2. ↩ Undo: Company…"]
    assert "1. ↩ Undo: Company Holidays · cal-1\n2. ↩ Undo: Company Holidays · cal-2" in card.markdown


@pytest.mark.parametrize(
    "names",
    [("Gym", "Gym "), ("Gym", "gym"), ("Team\u00a0A", "Team A"), ("Ｇｙｍ", "Gym"), ("Team  A", "Team A")],
    ids=["trailing-space", "case", "no-break-space", "full-width", "double-space"],
)
def test_names_the_bot_itself_calls_the_same_get_numbered_buttons(names: tuple[str, str]) -> None:
    # The resolver matches names ignoring case and surrounding space: the "which one?" card for them must not show
    # two buttons that read the same.
    calendars = [{"id": f"cal-{n}", "name": name} for n, name in enumerate(names)]
    actions = tuple(Action("unsubscribe", f"cal-{n}", name) for n, name in enumerate(names))

    card = cards.render(Reply("ambiguous", {"text": "gym", "calendars": calendars}, actions), "en")

    assert [b.title[:3] for b in card.buttons] == ["1. ", "2. "]


def test_distinct_labels_stay_unnumbered() -> None:
    actions = (Action("unsubscribe", "cal-1", "Lunch"), Action("unsubscribe", "cal-2", "Yoga"))
    card = cards.render(Reply("calendars", {"calendars": []}, actions), "en")

    assert [b.title for b in card.buttons] == ["Unsubscribe Lunch", "Unsubscribe Yoga"]


def msg_param_bytes(card: Card) -> int:
    """The robot OpenAPI msgParam the card becomes, as bytes (the shape replies.robot_message builds)."""
    param = {"title": card.title, "text": card.markdown}
    for number, button in enumerate(card.buttons, start=1):
        param[f"actionTitle{number}"] = button.title
        param[f"actionURL{number}"] = button.url
    return len(json.dumps(param, ensure_ascii=False).encode())


# DingTalk's documented limits, written out here: a test that read them from bot.cards would pass whatever they were.
DINGTALK_TITLE_LIMIT = 64
DINGTALK_MARKDOWN_LIMIT = 5_000
DINGTALK_MAX_BUTTONS = 5
DINGTALK_BUTTON_TITLE_LIMIT = 20
DINGTALK_BUTTON_URL_LIMIT = 500
DINGTALK_BUTTON_LIST_LIMIT = 1_000  # the buttons as btn_json_list
DINGTALK_MSG_PARAM_LIMIT = 15_000


def assert_within_dingtalks_limits(card: Card) -> None:
    assert len(card.title) <= DINGTALK_TITLE_LIMIT
    assert len(card.markdown) <= DINGTALK_MARKDOWN_LIMIT - 70  # room for a group reply's @mention
    assert len(card.buttons) <= DINGTALK_MAX_BUTTONS
    assert all(len(button.title) <= DINGTALK_BUTTON_TITLE_LIMIT for button in card.buttons)
    assert all(len(button.url) <= DINGTALK_BUTTON_URL_LIMIT for button in card.buttons)
    button_list = [{"title": button.title, "actionURL": button.url} for button in card.buttons]
    assert len(json.dumps(button_list, ensure_ascii=False, separators=(",", ":"))) <= DINGTALK_BUTTON_LIST_LIMIT
    assert msg_param_bytes(card) <= DINGTALK_MSG_PARAM_LIMIT


def _texts(max_size: int) -> st.SearchStrategy[str]:
    """Any text up to `max_size` characters; a short piece repeated, so that long and wide (CJK, emoji) texts are
    common rather than rare."""
    pieces = st.text(st.characters(codec="utf-8") | st.sampled_from('日历😀*"<_,'), min_size=1, max_size=8)
    return st.builds(lambda piece, times: (piece * times)[:max_size], pieces, st.integers(1, max_size))


def _calendars(min_count: int, max_count: int) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Up to `max_count` (id, name) pairs, cycling through a few drawn ones."""
    pairs = st.lists(st.tuples(_texts(256), _texts(300)), min_size=1, max_size=4)
    return st.builds(
        lambda drawn, count: [drawn[n % len(drawn)] for n in range(count)], pairs, st.integers(min_count, max_count)
    )


@settings(deadline=None)  # big cards take a few milliseconds, more on a busy machine
@given(st.sampled_from(["calendars", "no_match", "ambiguous"]), _calendars(0, 400), st.sampled_from(LOCALES))
def test_a_card_listing_any_calendars_stays_within_dingtalks_limits(
    outcome: str, calendars: list[tuple[str, str]], locale: str
) -> None:
    listed = [{"id": calendar_id, "name": name} for calendar_id, name in calendars]
    actions = tuple(Action("unsubscribe", calendar_id, name) for calendar_id, name in calendars)
    data = {"text": "x", "calendars": listed, "code": "", "request_id": ""}

    card = cards.render(Reply(outcome, data, actions), locale)

    assert_within_dingtalks_limits(card)


@settings(deadline=None)
@given(_calendars(2, 20), st.integers(0, 20), st.sampled_from(LOCALES))
def test_a_batch_card_of_any_calendars_stays_within_dingtalks_limits(
    calendars: list[tuple[str, str]], undone: int, locale: str
) -> None:
    items = [
        {"outcome": "unsubscribed", "calendar_id": calendar_id, "name": name, "request_id": name}
        if number < undone
        else {"outcome": "not_in_scope", "calendar_id": calendar_id, "code": name, "request_id": calendar_id}
        for number, (calendar_id, name) in enumerate(calendars)
    ]
    actions = tuple(Action("resubscribe", calendar_id, name) for calendar_id, name in calendars[:undone])

    card = cards.render(Reply("batch", {"items": items}, actions), locale)

    assert_within_dingtalks_limits(card)


def test_a_list_too_long_for_one_card_shows_the_first_calendars_and_says_how_many_more() -> None:
    calendars = [(f"日历标识{n:03d}" * 8, f"很长的日历名称第{n:03d}号" * 4) for n in range(300)]
    listed = [{"id": calendar_id, "name": name} for calendar_id, name in calendars]
    actions = tuple(Action("unsubscribe", calendar_id, name) for calendar_id, name in calendars)

    card = cards.render(Reply("calendars", {"calendars": listed}, actions), "zh_CN")

    assert_within_dingtalks_limits(card)
    shown = card.markdown.count("**") // 2
    assert 5 < shown < 300
    assert f"另有 {300 - shown} 个未显示" in card.markdown and "`取消订阅` 加上它的名称" in card.markdown
    assert card.markdown.count("dtmd://") == shown  # one link per calendar shown, none for those not shown


def test_an_action_whose_link_is_too_long_for_a_button_becomes_a_link_in_the_body() -> None:
    long_id = "长" * 60  # 540 characters once percent-encoded
    actions = (Action("resubscribe", long_id, "Holidays"), Action("resubscribe", "cal-2", "Lunch"))

    card = cards.render(Reply("unsubscribed", SAMPLE_DATA["unsubscribed"], actions), "en")

    assert card.buttons == () and card.interactive
    assert f"- [↩ Undo: Holidays]({SEND_AS_USER}resubscribe%20%22{quote(long_id)}%22)" in card.markdown


def test_a_card_of_wide_characters_is_held_to_the_msg_param_bytes_not_only_to_the_characters() -> None:
    wide = "😀" * 80  # 80 characters, 320 bytes in UTF-8
    items = [
        {"outcome": "not_in_scope", "calendar_id": f"{wide}{n}", "code": wide, "request_id": wide} for n in range(16)
    ]
    actions = tuple(Action("resubscribe", f"cal-{n}", wide) for n in range(5))

    card = cards.render(Reply("batch", {"items": items}, actions), "en")

    assert len(card.markdown) <= cards.MARKDOWN_BUDGET  # the characters alone would fit
    assert_within_dingtalks_limits(card)


AUDITED_RESULTS = (
    "unsubscribed",
    "resubscribed",
    "unanswered",
    "temporary_problem",
    "dingtalk_error",
    "not_in_scope",
    "not_subscribable",
    "unknown_calendar",
    "subscribe_limit",
    "app_lacks_permission",
    "app_not_ready",
    "org_quota_exhausted",
    "org_not_authorized",
    "calendar_id_missing",
    "sender_unknown",
)


@pytest.mark.parametrize("result", AUDITED_RESULTS)
def test_the_zh_cn_audit_card_says_each_action_and_result_in_words(result: str) -> None:
    entry = {**SAMPLE_DATA["audit"]["entries"][0], "action": "resubscribe", "result": result}

    markdown = cards.render(Reply("audit", {"subject": "cal-1", "entries": [entry]}), "zh_CN").markdown

    row = next(line for line in markdown.splitlines() if line.startswith("1. "))
    assert row.startswith("1. 2026-11-27 08:00:00 UTC · s1 · 重新订阅 **Holidays** · ") and row.endswith(" · R1")
    assert not re.search(r"[a-z]{3,}", row.replace("UTC", "").replace("Holidays", ""))  # no English name left


def test_the_zh_cn_audit_card_shows_a_result_it_has_no_words_for_as_stored_and_escaped() -> None:
    entry = {**SAMPLE_DATA["audit"]["entries"][0], "result": "new_**result**"}
    refusal = {"when": "2026-11-27 08:00:00 UTC", "staff_id": "s2", "action": "stats", "calendar": "", "count": 2}

    changes = cards.render(Reply("audit", {"subject": "cal-1", "entries": [entry]}), "zh_CN").markdown
    refusals = cards.render(Reply("audit", {"subject": "", "entries": [refusal]}), "zh_CN").markdown

    assert "· 取消订阅 **Holidays** · new\\_\\*\\*result\\*\\* · R1" in changes
    assert "· s2 · 统计 · 2 次" in refusals
