"""Reading DingTalk's 2xx answers against their documented shapes, and a budget that keeps time for a fallback:
pure functions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bot.dingtalk import answers, budget
from bot.dingtalk.budget import Budget
from bot.dingtalk.errors import DingTalkError, raise_for_errcode
from bot.models import Calendar


def code_of(read: Any, data: dict[str, Any]) -> str:
    with pytest.raises(DingTalkError) as raised:
        read(data)
    return raised.value.code


@pytest.mark.parametrize("errcode", [0, "0"])
def test_errcode_zero_is_success_as_a_number_or_a_string(errcode: object) -> None:
    raise_for_errcode({"errcode": errcode})
    assert answers.union_id({"errcode": errcode, "result": {"unionid": "u1"}}) == "u1"


@pytest.mark.parametrize(
    ("data", "code"), [({"errcode": 60121}, "60121"), ({"errcode": "88"}, "88"), ({}, "malformedAnswer")]
)
def test_an_errcode_other_than_zero_or_none_at_all_is_an_error(data: dict[str, Any], code: str) -> None:
    assert code_of(raise_for_errcode, data) == code


@pytest.mark.parametrize(
    ("read", "data"),
    [
        (answers.union_id, {"errcode": 0, "errmsg": "ok"}),
        (answers.union_id, {"errcode": 0, "result": {"unionid": ""}}),
        (answers.union_id, {"errcode": 0, "result": "u1"}),
        (answers.calendars, {}),
        (answers.calendars, {"response": {}}),
        (answers.calendars, {"response": {"calendars": {}}}),
        (answers.access_token, {"expireIn": 7200}),
        (answers.access_token, {"accessToken": 42}),
        (answers.stream_endpoint, {"endpoint": "wss://x"}),
        (answers.stream_endpoint, {}),
        (answers.sent, {}),
        (answers.delivered_to("s1"), {"invalidStaffIdList": []}),
    ],
)
def test_an_answer_missing_what_the_api_documents_is_malformed(read: Any, data: dict[str, Any]) -> None:
    assert code_of(read, data) == "malformedAnswer"


@pytest.mark.parametrize("data", [{}, {"success": True}, {"errcode": 0}, {"errcode": "0", "errmsg": "ok"}])
def test_a_webhook_answer_without_errcode_or_with_errcode_zero_delivered_the_card(data: dict[str, Any]) -> None:
    answers.webhook_accepted(data)
    assert code_of(answers.webhook_accepted, {"errcode": 310000, "errmsg": "x"}) == "310000"


def test_calendars_are_read_and_entries_without_an_id_skipped() -> None:
    data = {"response": {"calendars": [{"id": "c1", "summary": "Holidays", "type": "subscribed"}, {"summary": "x"}, 7]}}
    assert answers.calendars(data) == [Calendar("c1", "Holidays", "subscribed")]
    assert answers.calendars({"response": {"calendars": []}}) == []


def test_calendar_entries_whose_fields_are_not_text_are_skipped_or_left_blank_without_recursing() -> None:
    deep = orjson.loads("[" * 990 + "]" * 990)  # str() of this recursed past Python's limit: "something went wrong"
    entries = [{"id": deep}, {"id": {"a": 1}}, {"id": 12}, {"id": "c1", "summary": deep, "type": ["subscribed"]}]

    assert answers.calendars({"response": {"calendars": entries}}) == [Calendar("c1", "", "unknown")]


@pytest.mark.parametrize(
    ("data", "lifetime"),
    [
        ({"accessToken": "t"}, 7200.0),
        ({"accessToken": "t", "expireIn": 0}, 0.0),
        ({"accessToken": "t", "expireIn": "x"}, 0.0),
    ],
)
def test_a_token_and_its_lifetime(data: dict[str, Any], lifetime: float) -> None:
    assert answers.access_token(data) == ("t", lifetime)


@pytest.mark.parametrize("listed_in", answers.UNDELIVERED_LISTS)
def test_batch_send_raises_the_list_that_names_the_receiver(listed_in: str) -> None:
    read = answers.delivered_to("s1")
    read({"processQueryKey": "k", "invalidStaffIdList": [], "flowControlledStaffIdList": ["s2"]})
    assert code_of(read, {"processQueryKey": "k", listed_in: ["s1"]}) == listed_in


def test_keeping_holds_back_a_share_of_the_budget_and_gives_it_back() -> None:
    with budget.spending(10.0) as spent:
        with budget.keeping(0.5):
            assert 4.9 < spent.remaining <= 5.0
        assert 9.9 < spent.remaining <= 10.0
    with budget.keeping(0.5):  # no budget: nothing to keep
        assert budget.current.get() is None


def test_a_budget_gives_back_waiting_time_only_up_to_its_own_length() -> None:
    budget = Budget(1.0)
    before = budget.deadline
    budget.extend(0.4)
    budget.extend(5.0)
    budget.extend(1.0)
    assert budget.deadline - before == 1.0 and budget.credit_left == 0.0
