"""The routing table: one handler per command, each returning Reply data."""

from __future__ import annotations

from bot.commands import admin, bulk, calendars, connection, help, resubscribe, unsubscribe, whoami
from bot.commands.base import CommandError, Context, Handler

HANDLERS: dict[str, Handler] = {
    "help": help.show_help,
    "list": calendars.list_calendars,
    "unsubscribe": unsubscribe.unsubscribe,
    "resubscribe": resubscribe.resubscribe,
    "confirm": bulk.confirm,
    "undo": bulk.undo,
    "whoami": whoami.whoami,
    "stats": admin.stats,
    "audit": admin.audit,
    "disconnect": connection.disconnect,
}

__all__ = ["HANDLERS", "CommandError", "Context"]
