"""`whoami` / `我是谁`: what DingTalk says about the sender and what the bot is: "why can't it act for me?"."""

from __future__ import annotations

from bot import __version__
from bot.auth.users import ForeignSender, is_member
from bot.commands.base import Context
from bot.dingtalk.errors import FAILURES
from bot.models import Command, Outcome, Reply


async def whoami(context: Context, command: Command) -> Reply:
    message = context.message
    union_id, lookup_code = "", ""
    try:
        union_id = await context.users.union_id(message, context.dingtalk)
    except ForeignSender:
        pass
    except FAILURES as error:
        lookup_code = error.code
    # An ISV robot's code is its own, not the app's key (reference §10.2): the message tells which kind answers.
    internal = message.robot_code in ("", context.config.client_id)
    data = {
        "staff_id": message.sender_staff_id,
        "union_id": union_id,
        "lookup_code": lookup_code,
        "sender_corp_id": message.sender_corp_id,
        "bot_corp_id": message.chatbot_corp_id,
        "member": is_member(message),
        "group": message.is_group,
        "admin": context.is_admin,
        "version": __version__,
        "region": context.config.region,
        "internal_app": internal,
    }
    return Reply(Outcome.WHOAMI, data, private=True)
