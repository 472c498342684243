"""The card as a DingTalk client shows it, drawn by rich (the demo draws it so): markdown rendered, buttons, frames."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bot.cards.view import draw, width_of


def test_a_card_is_drawn_as_a_client_shows_it_headings_bold_links_and_buttons_rendered() -> None:
    markdown = (
        "### ✅ Unsubscribed\nYou no longer follow **Team \\*Offsite\\*** ([undo](dtmd://x?content=y)).\n\n"
        "<font color=#8c8c8c>Request id: \\*R1\\* &lt;b&gt;</font>\n<FONT size=2>x</FONT>"
    )

    text = "\n".join(draw("bot (webhook)", markdown, ["↩ Undo: Team Offsite"], 60))

    assert "✅ Unsubscribed" in text and "Team *Offsite*" in text and "Request id: *R1* <b>" in text
    assert "###" not in text and "**" not in text and "font" not in text.lower() and "dtmd://" not in text
    assert "[1] ↩ Undo: Team Offsite" in text


def test_a_cjk_line_wraps_inside_the_frame() -> None:
    rows = draw("bot", "你已不再订阅食堂菜单" * 6, [], 24)

    assert {width_of(row) for row in rows} == {24} and len(rows) > 4


@given(st.lists(st.text(max_size=300), max_size=6), st.integers(min_value=12, max_value=120), st.text(max_size=30))
@example(lines=["\ufe0f"], width=12, label="")  # an emoji selector after the padding's space once widened a row
def test_every_row_of_a_frame_is_exactly_as_wide_as_the_frame(lines: list[str], width: int, label: str) -> None:
    rows = draw(f"bot {label}".splitlines()[0], "\n".join(lines), lines[:2], width)

    assert [width_of(row) for row in rows] == [width] * len(rows)
    assert rows[0].startswith("┌─ b") and rows[-1].startswith("└")
