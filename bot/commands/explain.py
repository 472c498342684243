"""Which card a failed call gets: one table from the kind of failure (and DingTalk's code, for a refusal) to Outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.dingtalk.errors import (
    QUOTA_EXHAUSTED,
    DingTalkError,
    Failure,
    MalformedAnswer,
    NoRobotCode,
    NotReady,
    OrganizationUnnamed,
    OutOfDescriptors,
    OutOfTime,
    Refused,
    Unreachable,
    UnusableUrl,
)
from bot.models import Outcome, Reply

PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
ORG_QUOTA_EXHAUSTED = QUOTA_EXHAUSTED  # the organization's monthly API calls are used up
# The permission each API needs, named when DingTalk's refusal names none.
CHANGE_SCOPE = "Calendar.Calendar.Write"  # unsubscribe and subscribe
LIST_SCOPE = "Calendar.Event.Read"  # list a user's calendars
LOOKUP_SCOPE = "qyapi_get_member"  # topapi/v2/user/get

# The bot's own conditions and DingTalk's failures other than a refusal, by kind (first match wins).
_KINDS: tuple[tuple[type[Exception], Outcome], ...] = (
    (NotReady, Outcome.APP_NOT_READY),  # an ISV app before its first suite ticket
    (OrganizationUnnamed, Outcome.ORG_NOT_AUTHORIZED),
    (OutOfTime, Outcome.TEMPORARY_PROBLEM),
    (OutOfDescriptors, Outcome.TEMPORARY_PROBLEM),
    (Unreachable, Outcome.TEMPORARY_PROBLEM),
    (MalformedAnswer, Outcome.TEMPORARY_PROBLEM),
    (NoRobotCode, Outcome.DINGTALK_ERROR),
    (UnusableUrl, Outcome.DINGTALK_ERROR),
)
# DingTalk's refusals that mean the same whatever the call and whatever the status: an organization without a token
# and a used-up monthly quota (which must never read as "try again in a minute", even answered with 429).
_REFUSED_ANY_CALL = {
    "invalidSuiteTicket": Outcome.APP_NOT_READY,
    "invalidAuthInfo": Outcome.ORG_NOT_AUTHORIZED,
    ORG_QUOTA_EXHAUSTED: Outcome.ORG_QUOTA_EXHAUSTED,
}
# Then a temporary refusal (a throttle, a server error) is TEMPORARY_PROBLEM; then each call's own codes. A code
# DingTalk answers for several problems maps to (words of its message, outcome) pairs: the first whose words the
# message holds ("" always does).
Said = tuple[tuple[str, Outcome], ...]
_REFUSED_BY_CALENDAR_CALLS: dict[str, Outcome | Said] = {
    PERMISSION_DENIED: Outcome.APP_LACKS_PERMISSION,
    "permissionDenied": Outcome.NOT_IN_SCOPE,
    "exceedSubscribeLimit": Outcome.SUBSCRIBE_LIMIT,
    "invalidParameter": (
        ("calendarId cannot be blank", Outcome.CALENDAR_ID_MISSING),
        ("calendar type invalid", Outcome.NOT_SUBSCRIBABLE),
        ("", Outcome.UNKNOWN_CALENDAR),
    ),
}
_REFUSED_BY_LOOKUPS: dict[str, Outcome | Said] = {
    PERMISSION_DENIED: Outcome.APP_LACKS_PERMISSION,
    "60011": Outcome.APP_LACKS_PERMISSION,  # topapi: the app may not read contacts
    "33012": Outcome.SENDER_UNKNOWN,
    "60121": Outcome.SENDER_UNKNOWN,
}


def outcome_of(error: Failure, refused_by_call: Mapping[str, Outcome | Said]) -> Outcome:
    """The outcome of a failed call; `refused_by_call`: what DingTalk's codes mean for this kind of call."""
    if isinstance(error, Refused):
        if error.code in _REFUSED_ANY_CALL:
            return _REFUSED_ANY_CALL[error.code]
        if error.is_temporary:
            return Outcome.TEMPORARY_PROBLEM
        outcome = refused_by_call.get(error.code, Outcome.DINGTALK_ERROR)
        if isinstance(outcome, Outcome):
            return outcome
        return next(said for words, said in outcome if words in error.message)
    return next(outcome for kind, outcome in _KINDS if isinstance(error, kind))


def explain_calendar_error(error: Failure, calendar_id: str, scope: str = CHANGE_SCOPE, name: str = "") -> Reply:
    """The card for a failed calendar call about a calendar (its name if the bot has seen it); `scope` is the
    permission the failed call needs."""
    data = {"calendar_id": calendar_id, "name": name}
    return _reply(outcome_of(error, _REFUSED_BY_CALENDAR_CALLS), error, data, scope)


def explain_lookup_error(error: Failure) -> Reply:
    """The card for a failed lookup of who the sender is."""
    data = {"calendar_id": "", "name": ""}
    return _reply(outcome_of(error, _REFUSED_BY_LOOKUPS), error, data, LOOKUP_SCOPE)


def _reply(outcome: Outcome, error: Failure, data: dict[str, Any], scope: str) -> Reply:
    """The outcome's card data: what failed (code, request id), and what the outcome's card shows of it."""
    request_id = error.request_id if isinstance(error, DingTalkError) else ""  # the bot's own: no request was made
    data = {**data, "code": error.code, "request_id": request_id}
    if outcome == Outcome.APP_LACKS_PERMISSION:
        named = error.required_scopes if isinstance(error, Refused) else ()
        data["scopes"] = named or (scope,)
    elif outcome == Outcome.DINGTALK_ERROR:
        data["message"] = error.message
    return Reply(outcome, data)
