"""DingTalk's errors explained one by one: each documented code becomes its own outcome."""

from __future__ import annotations

from bot.errors import DingTalkError
from bot.models import Reply

PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
_USER_NOT_FOUND = ("33012", "60121")
_NO_CONTACT_PERMISSION = ("60011",)  # topapi: the app may not read contacts


def explain_calendar_error(error: DingTalkError, calendar_id: str) -> Reply:
    """The card for an error the calendar API answered."""
    data = {"calendar_id": calendar_id, "code": error.code, "request_id": error.request_id}
    if error.is_temporary:
        return Reply("temporary_problem", data)
    if error.code == PERMISSION_DENIED:
        scopes = error.required_scopes or ("Calendar.Calendar.Write",)
        return Reply("app_lacks_permission", {**data, "scopes": scopes})
    if error.code == "permissionDenied":
        return Reply("not_in_scope", data)
    if error.code == "exceedSubscribeLimit":
        return Reply("subscribe_limit", data)
    if error.code == "invalidParameter":
        if "calendarId cannot be blank" in error.message:
            return Reply("calendar_id_missing", data)
        if "calendar type invalid" in error.message:
            return Reply("not_subscribable", data)
        return Reply("unknown_calendar", data)
    return Reply("dingtalk_error", {**data, "message": error.message})


def explain_lookup_error(error: DingTalkError) -> Reply:
    """The card for an error while looking up who the sender is."""
    data = {"calendar_id": "", "code": error.code, "request_id": error.request_id}
    if error.is_temporary:
        return Reply("temporary_problem", data)
    if error.code in _USER_NOT_FOUND:
        return Reply("sender_unknown", data)
    if error.code == PERMISSION_DENIED or error.code in _NO_CONTACT_PERMISSION:
        return Reply("app_lacks_permission", {**data, "scopes": ("qyapi_get_member",)})
    return Reply("dingtalk_error", {**data, "message": error.message})
