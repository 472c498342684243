"""`help` / `帮助`, and anything the bot does not understand: the commands with examples."""

from __future__ import annotations

from bot.handlers.base import Context
from bot.models import Command, Outcome, Reply


async def show_help(context: Context, command: Command) -> Reply:
    return Reply(Outcome.HELP, {"understood": command.understood})
