"""A card as a DingTalk client shows it, drawn in a terminal by rich: markdown rendered, buttons beneath, in a frame."""

from __future__ import annotations

import io
import re

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

_FONT_TAG = re.compile(r"</?font\b[^>]*>", re.IGNORECASE)  # DingTalk's grey text: shown as plain text


def draw(label: str, markdown: str, buttons: list[str], width: int, *, color: bool = False) -> list[str]:
    """The card in a box `width` columns wide, labelled at the top: headings, bold, lists and links rendered as a
    client renders them (no `###`, `**`, escapes or tags left), then one line per button, `[n] title`."""
    parts: list[RenderableType] = [Markdown(_FONT_TAG.sub("", markdown), hyperlinks=True)]
    if buttons:
        parts.append(Text(""))
        parts += [Text(f"[{number}] {title}", style="bold reverse") for number, title in enumerate(buttons, 1)]
    out = io.StringIO()
    console = Console(
        file=out, width=width, color_system="standard" if color else None, force_terminal=color, emoji=False
    )
    console.print(Panel(Group(*parts), title=Text(label), title_align="left", box=box.SQUARE, width=width))
    return out.getvalue().rstrip("\n").split("\n")


def width_of(row: str) -> int:
    """Terminal columns a drawn row takes, as rich measures them."""
    return cell_len(row)
