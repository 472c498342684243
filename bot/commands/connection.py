"""`disconnect` / `断开`: forget the sender's own DingTalk tokens (BOT_CALENDAR_TOKEN=user)."""

from __future__ import annotations

from bot.auth.user_tokens import user_key
from bot.auth.users import is_member
from bot.commands.base import Context
from bot.models import Command, Outcome, Reply


async def disconnect(context: Context, command: Command) -> Reply:
    tokens = context.user_tokens
    if tokens is None or not is_member(context.message):
        return Reply(Outcome.DISCONNECTED, {"user_tokens": tokens is not None, "had_grant": False}, private=True)
    had_grant = await tokens.forget(user_key(context.message))
    return Reply(Outcome.DISCONNECTED, {"user_tokens": True, "had_grant": had_grant}, private=True)
