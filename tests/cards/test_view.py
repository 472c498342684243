"""The card as a DingTalk client shows it (the demo draws it so): font tags dropped, widths, wrapping, frames."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bot.cards.view import client_text, display_width, frame, wrap


def test_client_text_drops_font_tags_and_shows_escapes_as_characters() -> None:
    markdown = "<font color=#8c8c8c>Request id: \\*R1\\* &lt;b&gt; a\u200b@b</font>\n<FONT size=2>x</FONT>"

    assert client_text(markdown) == "Request id: *R1* <b> a@b\nx"


def test_wide_characters_take_two_columns_and_invisible_ones_none() -> None:
    assert display_width("食堂菜单") == 8
    assert display_width("✅ ok") == 5
    assert display_width("✏\ufe0f x") == 4
    assert display_width("e\u0301\u200b") == 1


def test_a_cjk_line_is_cut_between_characters_and_a_latin_one_at_spaces() -> None:
    assert wrap("你已不再订阅食堂菜单", 8) == ["你已不再", "订阅食堂", "菜单"]
    assert wrap("- unsubscribe from Company Holidays", 16) == ["- unsubscribe", "  from Company", "  Holidays"]
    assert wrap("改主意了？点撤销", 8) == ["改主意", "了？点撤", "销"]  # no line starts with closing punctuation


@given(st.lists(st.text(max_size=300), max_size=6), st.integers(min_value=8, max_value=120), st.text(max_size=30))
@example(lines=["\ufe0f"], width=8, label="")  # an emoji selector after the padding's space once widened a row
def test_every_row_of_a_frame_is_exactly_as_wide_as_the_frame(lines: list[str], width: int, label: str) -> None:
    shown = [line for text in lines for line in client_text(text).splitlines()]

    rows = frame(f"bot {label}".splitlines()[0], shown, width)

    assert [display_width(row) for row in rows] == [width] * len(rows)
    assert rows[0].startswith("┌─ b") and rows[-1].startswith("└")
