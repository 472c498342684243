"""The routing table: one handler per command, each returning Reply data."""

from __future__ import annotations

from bot.handlers import calendars, help, resubscribe, unsubscribe
from bot.handlers.base import CommandError, Context, Handler

HANDLERS: dict[str, Handler] = {
    "help": help.show_help,
    "list": calendars.list_calendars,
    "unsubscribe": unsubscribe.unsubscribe,
    "resubscribe": resubscribe.resubscribe,
}

__all__ = ["HANDLERS", "CommandError", "Context"]
