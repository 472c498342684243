"""DingTalkError's classes and the retry delays: which failures are temporary, resent, and how long to wait; pure."""

from __future__ import annotations

import pytest

from bot.dingtalk.errors import DingTalkError, retry_delay


@pytest.mark.parametrize(
    ("error", "temporary", "token_rejected"),
    [
        (DingTalkError(0, "ConnectError"), True, False),
        (DingTalkError(503, "HTTP503"), True, False),
        (DingTalkError(429, "system.busy"), True, False),
        (DingTalkError(403, "Forbidden.AccessDenied.QpsLimitForApi"), True, False),
        (DingTalkError(200, "90018"), True, False),
        (DingTalkError(200, "-1"), True, False),
        (DingTalkError(400, "InvalidAuthentication"), False, True),
        (DingTalkError(401, "Unauthorized"), False, True),
        (DingTalkError(200, "88", sub_code="40014"), False, True),
        (DingTalkError(200, "40014"), False, True),
        (DingTalkError(400, "permissionDenied"), False, False),
        (DingTalkError(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"), False, False),
        (DingTalkError(400, "send.too.fast"), True, False),
        (DingTalkError(400, "send.byToken.tooFast"), True, False),
        (DingTalkError(400, "too.many.group"), True, False),
        (DingTalkError(400, "too.many.people"), True, False),
        (DingTalkError(400, "toomuch.msg"), True, False),
        (DingTalkError(200, "flowControlledStaffIdList"), True, False),
        (DingTalkError(200, "invalidStaffIdList"), False, False),
        (DingTalkError(200, "malformedAnswer"), True, False),
        (DingTalkError(200, "internalError"), True, False),
        (DingTalkError(403, "Forbidden.AccessDenied.ApiCountLimitForOrg"), False, False),
        (DingTalkError(429, "Forbidden.AccessDenied.ApiCountLimitForOrg"), False, False),
        (DingTalkError(0, "InvalidURL"), False, False),
    ],
)
def test_dingtalk_error_classes(error: DingTalkError, temporary: bool, token_rejected: bool) -> None:
    assert (error.is_temporary, error.is_token_rejected) == (temporary, token_rejected)


@pytest.mark.parametrize(
    ("error", "safe"),
    [
        (DingTalkError(500, "HTTP500"), True),
        (DingTalkError(400, "send.too.fast"), True),
        (DingTalkError(200, "flowControlledStaffIdList"), True),
        (DingTalkError(0, "ConnectError"), True),
        (DingTalkError(0, "ReadTimeout"), False),
        (DingTalkError(0, "RemoteProtocolError"), False),
        (DingTalkError(0, "AnswerTooLarge"), False),
        (DingTalkError(200, "malformedAnswer"), False),
        (DingTalkError(0, "CommandTimeout"), False),
    ],
)
def test_only_a_send_that_surely_did_not_arrive_is_sent_again(error: DingTalkError, safe: bool) -> None:
    assert error.is_safe_to_resend is safe


@pytest.mark.parametrize("attempt", range(1, 10))
def test_retry_delays_back_off_and_wait_a_second_after_throttling(attempt: int) -> None:
    ceiling = min(4.0, 0.25 * 2 ** (attempt - 1))
    for _ in range(50):
        assert ceiling / 2 <= retry_delay(attempt, throttled=False) <= ceiling
        assert 1.0 <= retry_delay(attempt, throttled=True) <= 1.0 + ceiling
