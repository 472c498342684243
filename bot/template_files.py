"""The Jinja2 template files (cards, OAuth web pages): found installed or in the checkout, read into memory once."""

from __future__ import annotations

from pathlib import Path

import jinja2


def _templates_dir() -> Path:
    """bot/templates in an installed package; the repository's top-level templates/ in a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


TEMPLATES_DIR = _templates_dir()


def templates_in_memory(folder: Path) -> jinja2.DictLoader:
    """Every template under `folder`, read once at start (a few KB): rendering a card never opens a file, so it
    works when the process has no file descriptor left (the card of a command that waited for one)."""
    files = sorted(path for path in folder.rglob("*.j2") if path.is_file())
    return jinja2.DictLoader({path.relative_to(folder).as_posix(): path.read_text("utf-8") for path in files})
