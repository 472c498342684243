"""One async function per command, returning Reply data; DingTalk's errors explained one by one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.commands import calendar_id_problem
from bot.dingtalk import DingTalkClient, DingTalkError
from bot.models import Command, Message, Reply
from bot.users import ForeignSender, UserDirectory

PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
_USER_NOT_FOUND = ("33012", "60121")
_NO_CONTACT_PERMISSION = ("60011",)  # topapi: the app may not read contacts


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the message it answers and the platform clients."""

    message: Message
    dingtalk: DingTalkClient
    users: UserDirectory


async def show_help(context: Context, command: Command) -> Reply:
    return Reply("help", {"understood": command.understood})


async def unsubscribe(context: Context, command: Command) -> Reply:
    calendar_id = command.argument
    problem = calendar_id_problem(calendar_id)
    if problem == "missing":
        return Reply("calendar_id_missing", {"code": "", "request_id": ""})
    if problem:
        return Reply("invalid_calendar_id", {"calendar_id": calendar_id, "problem": problem})
    try:
        union_id = await context.users.union_id(context.message)
    except ForeignSender:
        return Reply("foreign_sender")
    except DingTalkError as error:
        return explain_lookup_error(error)
    try:
        request_id = await context.dingtalk.unsubscribe_calendar(union_id, calendar_id)
    except DingTalkError as error:
        return explain_calendar_error(error, calendar_id)
    return Reply("unsubscribed", {"calendar_id": calendar_id, "request_id": request_id})


Handler = Callable[[Context, Command], Awaitable[Reply]]
HANDLERS: dict[str, Handler] = {"help": show_help, "unsubscribe": unsubscribe}


def explain_calendar_error(error: DingTalkError, calendar_id: str) -> Reply:
    """The card for an error the calendar API answered, one outcome per documented error."""
    data = {"calendar_id": calendar_id, "code": error.code, "request_id": error.request_id}
    if error.is_temporary:
        return Reply("temporary_problem", data)
    if error.code == PERMISSION_DENIED:
        return Reply("app_lacks_permission", {**data, "scopes": error.required_scopes or ("Calendar.Calendar.Write",)})
    if error.code == "permissionDenied":
        return Reply("not_in_scope", data)
    if error.code == "invalidParameter":
        if "calendarId cannot be blank" in error.message:
            return Reply("calendar_id_missing", data)
        if "calendar type invalid" in error.message:
            return Reply("not_subscribable", data)
        return Reply("unknown_calendar", data)
    return Reply("dingtalk_error", {**data, "message": error.message})


def explain_lookup_error(error: DingTalkError) -> Reply:
    """The card for an error while looking up who the sender is."""
    data = {"code": error.code, "request_id": error.request_id}
    if error.is_temporary:
        return Reply("temporary_problem", {**data, "calendar_id": ""})
    if error.code in _USER_NOT_FOUND:
        return Reply("sender_unknown", data)
    if error.code == PERMISSION_DENIED or error.code in _NO_CONTACT_PERMISSION:
        return Reply("app_lacks_permission", {**data, "calendar_id": "", "scopes": ("qyapi_get_member",)})
    return Reply("dingtalk_error", {**data, "calendar_id": "", "message": error.message})
