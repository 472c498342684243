"""DingTalk's errors explained one by one: each documented code becomes its own outcome."""

from __future__ import annotations

from bot.dingtalk.errors import DingTalkError
from bot.models import Outcome, Reply

PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
ORG_QUOTA_EXHAUSTED = "Forbidden.AccessDenied.ApiCountLimitForOrg"  # the organization's monthly API calls are used up
# The permission each API needs, named when DingTalk's refusal names none.
CHANGE_SCOPE = "Calendar.Calendar.Write"  # unsubscribe and subscribe
LIST_SCOPE = "Calendar.Event.Read"  # list a user's calendars
LOOKUP_SCOPE = "qyapi_get_member"  # topapi/v2/user/get
_USER_NOT_FOUND = ("33012", "60121")
# An ISV app without a token for the organization: the ticket never came (or is stale), or no authorization.
NO_SUITE_TICKET = "suiteTicketMissing"  # the bot's own code: no suite_ticket event arrived yet
_ORGANIZATION_TOKEN_REFUSED = {
    NO_SUITE_TICKET: Outcome.APP_NOT_READY,
    "invalidSuiteTicket": Outcome.APP_NOT_READY,
    "invalidAuthInfo": Outcome.ORG_NOT_AUTHORIZED,
}
_NO_CONTACT_PERMISSION = ("60011",)  # topapi: the app may not read contacts


def explain_calendar_error(error: DingTalkError, calendar_id: str, scope: str = CHANGE_SCOPE, name: str = "") -> Reply:
    """The card for an error the calendar API answered about a calendar (its name if the bot has seen it); `scope`
    is the permission the failed call needs."""
    data = {"calendar_id": calendar_id, "name": name, "code": error.code, "request_id": error.request_id}
    if error.code in _ORGANIZATION_TOKEN_REFUSED:
        return Reply(_ORGANIZATION_TOKEN_REFUSED[error.code], data)
    # Before the temporary check: a used-up monthly quota must never read as "try again in a minute".
    if error.code == ORG_QUOTA_EXHAUSTED:
        return Reply(Outcome.ORG_QUOTA_EXHAUSTED, data)
    if error.is_temporary:
        return Reply(Outcome.TEMPORARY_PROBLEM, data)
    if error.code == PERMISSION_DENIED:
        return Reply(Outcome.APP_LACKS_PERMISSION, {**data, "scopes": error.required_scopes or (scope,)})
    if error.code == "permissionDenied":
        return Reply(Outcome.NOT_IN_SCOPE, data)
    if error.code == "exceedSubscribeLimit":
        return Reply(Outcome.SUBSCRIBE_LIMIT, data)
    if error.code == "invalidParameter":
        if "calendarId cannot be blank" in error.message:
            return Reply(Outcome.CALENDAR_ID_MISSING, data)
        if "calendar type invalid" in error.message:
            return Reply(Outcome.NOT_SUBSCRIBABLE, data)
        return Reply(Outcome.UNKNOWN_CALENDAR, data)
    return Reply(Outcome.DINGTALK_ERROR, {**data, "message": error.message})


def explain_lookup_error(error: DingTalkError) -> Reply:
    """The card for an error while looking up who the sender is."""
    data = {"calendar_id": "", "name": "", "code": error.code, "request_id": error.request_id}
    if error.code in _ORGANIZATION_TOKEN_REFUSED:
        return Reply(_ORGANIZATION_TOKEN_REFUSED[error.code], data)
    if error.code == ORG_QUOTA_EXHAUSTED:
        return Reply(Outcome.ORG_QUOTA_EXHAUSTED, data)
    if error.is_temporary:
        return Reply(Outcome.TEMPORARY_PROBLEM, data)
    if error.code in _USER_NOT_FOUND:
        return Reply(Outcome.SENDER_UNKNOWN, data)
    if error.code == PERMISSION_DENIED or error.code in _NO_CONTACT_PERMISSION:
        return Reply(Outcome.APP_LACKS_PERMISSION, {**data, "scopes": error.required_scopes or (LOOKUP_SCOPE,)})
    return Reply(Outcome.DINGTALK_ERROR, {**data, "message": error.message})
