"""`help` / `帮助`, and anything the bot does not understand: the commands the asker may use, with examples."""

from __future__ import annotations

from bot.commands.base import Context
from bot.models import Command, Outcome, Reply


async def show_help(context: Context, command: Command) -> Reply:
    return Reply(Outcome.HELP, {"understood": command.understood, "admin": context.is_admin})
