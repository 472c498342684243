"""explain_calendar_error() and explain_lookup_error(): which card each DingTalk answer gets; pure."""

from __future__ import annotations

import pytest

from bot.commands.explain import (
    CHANGE_SCOPE,
    LIST_SCOPE,
    ORG_QUOTA_EXHAUSTED,
    PERMISSION_DENIED,
    explain_calendar_error,
    explain_lookup_error,
)
from bot.dingtalk.errors import Failure, NotReady, OrganizationUnnamed, Refused
from bot.models import Outcome


@pytest.mark.parametrize("status", [403, 429, 503])
def test_a_used_up_monthly_quota_never_reads_as_a_throttle_whatever_the_status(status: int) -> None:
    error = Refused(status, ORG_QUOTA_EXHAUSTED, "api count limit", "R1")

    assert explain_calendar_error(error, "cal-1").outcome == "org_quota_exhausted"
    assert explain_lookup_error(error).outcome == "org_quota_exhausted"


@pytest.mark.parametrize(
    ("scope", "named", "shown"),
    [
        (LIST_SCOPE, (), ("Calendar.Event.Read",)),
        (CHANGE_SCOPE, (), ("Calendar.Calendar.Write",)),
        (LIST_SCOPE, ("Calendar.Calendar.Read",), ("Calendar.Calendar.Read",)),  # DingTalk's own word wins
    ],
)
def test_a_missing_permission_names_what_dingtalk_said_or_else_what_the_api_needs(
    scope: str, named: tuple[str, ...], shown: tuple[str, ...]
) -> None:
    error = Refused(403, PERMISSION_DENIED, "no", "R1", required_scopes=named)

    reply = explain_calendar_error(error, "", scope)

    assert reply.outcome == "app_lacks_permission" and tuple(reply.data["scopes"]) == shown


def test_a_lookup_without_contact_permission_names_qyapi_get_member() -> None:
    reply = explain_lookup_error(Refused(200, "60011", "no permission"))

    assert reply.outcome == "app_lacks_permission" and tuple(reply.data["scopes"]) == ("qyapi_get_member",)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (NotReady(), Outcome.APP_NOT_READY),
        (Refused(400, "invalidSuiteTicket", "", "R1"), Outcome.APP_NOT_READY),
        (Refused(400, "invalidAuthInfo", "", "R1"), Outcome.ORG_NOT_AUTHORIZED),
        (OrganizationUnnamed(), Outcome.ORG_NOT_AUTHORIZED),
    ],
)
def test_an_organization_without_a_token_is_explained_whichever_call_needed_it(
    error: Failure, outcome: Outcome
) -> None:
    assert explain_calendar_error(error, "cal-1").outcome == outcome
    assert explain_lookup_error(error).outcome == outcome
