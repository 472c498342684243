"""Interactive cards of a third-party enterprise (ISV) app: its robot's own code, each organization's presses apart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.platform import Sandbox
from tests.cards.interactive_bot import card_in, press, row_for, running_app
from tests.helpers import started_sandbox

ROBOT_CODE = "dingisvcardrobot"  # an ISV robot's own code: not the SuiteKey
CORP, OTHER_CORP = "dingcardcorpa", "dingcardcorpb"
THIRD_CORP = "dingcardcorpc"


async def authorized(sandbox: Sandbox, *corp_ids: str) -> None:
    await sandbox.wait_ack(await sandbox.push_suite_ticket())
    for corp_id in corp_ids:
        await sandbox.wait_ack(await sandbox.authorize_corp(corp_id))


def group_list(sandbox: Sandbox, corp_id: str, staff_id: str) -> dict[str, Any]:
    """A group's `list` from a member of this organization, to the ISV robot there."""
    union_id = f"union-{corp_id}-{staff_id}"
    if (corp_id, staff_id) not in sandbox.org_users:
        sandbox.add_org_user(corp_id, staff_id, union_id)
        sandbox.add_calendar(f"cal-{corp_id}", "Team")
        sandbox.subscribe(union_id, f"cal-{corp_id}")
    return sandbox.chat("list", staff_id, group=True, chatbotCorpId=corp_id, senderCorpId=corp_id, robotCode=ROBOT_CODE)


async def test_each_organization_gets_a_card_from_its_own_template(tmp_path: Path) -> None:
    templates = f"{CORP}=tplA.schema,{OTHER_CORP}=tplB.schema"
    async with (
        started_sandbox(robot_codes={ROBOT_CODE}) as sandbox,
        running_app(sandbox, tmp_path, DINGTALK_APP_TYPE="isv", BOT_CARD_TEMPLATE_ID=templates),
    ):
        sandbox.cards.templates = {"tplA.schema": True, "tplB.schema": True}
        await authorized(sandbox, CORP, OTHER_CORP)
        for corp_id, template_id in ((CORP, "tplA.schema"), (OTHER_CORP, "tplB.schema")):
            data = group_list(sandbox, corp_id, "staffcard1")  # the same staff id in both organizations
            await sandbox.push(data)
            track = await card_in(sandbox, data["conversationId"])

            created = sandbox.calls("card/createAndDeliver")[-1].json()
            assert created["outTrackId"] == track and created["cardTemplateId"] == template_id
            assert sandbox.cards.instances[track].template_id == template_id


async def test_an_organization_without_a_template_id_gets_todays_card_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        started_sandbox(robot_codes={ROBOT_CODE}) as sandbox,
        running_app(sandbox, tmp_path, DINGTALK_APP_TYPE="isv", BOT_CARD_TEMPLATE_ID=f"{CORP}=tplA.schema"),
    ):
        sandbox.cards.templates = {"tplA.schema": True}
        await authorized(sandbox, CORP, THIRD_CORP)
        caplog.set_level(logging.DEBUG, "bot.cards")
        for _ in range(2):
            data = group_list(sandbox, THIRD_CORP, "staffcard3")
            await sandbox.push(data)
            reply = await sandbox.wait_reply(data)  # today's notice in the group, the card 1:1

            assert reply.api == "webhook" and sandbox.cards.in_space(data["conversationId"]) == []
        assert sandbox.calls("card/createAndDeliver") == []
        told = [record for record in caplog.records if record.levelno >= logging.INFO and record.name == "bot.cards"]
        assert len(told) == 1 and told[0].fields["corp_id"] == THIRD_CORP  # type: ignore[attr-defined]
        assert "corpId=templateId" in told[0].fields["fix"]  # type: ignore[attr-defined]

        data = group_list(sandbox, CORP, "staffcard1")  # the organization with an id still gets its card
        await sandbox.push(data)
        await card_in(sandbox, data["conversationId"])


async def test_an_isv_card_is_delivered_as_the_robot_and_a_press_counts_in_the_card_organization_only(
    tmp_path: Path,
) -> None:
    async with (
        started_sandbox(robot_codes={ROBOT_CODE}) as sandbox,
        running_app(sandbox, tmp_path, DINGTALK_APP_TYPE="isv"),
    ):
        await sandbox.wait_ack(await sandbox.push_suite_ticket())
        for corp_id in (CORP, OTHER_CORP):
            await sandbox.wait_ack(await sandbox.authorize_corp(corp_id))
        sandbox.add_org_user(CORP, "staffcard1", "union-card-1")
        sandbox.add_org_user(OTHER_CORP, "staffcard1", "union-card-2")  # the same staff id in another organization
        for union_id in ("union-card-1", "union-card-2"):
            sandbox.add_calendar("cal-isv-card", "Isv")
            sandbox.subscribe(union_id, "cal-isv-card")
        data = sandbox.chat(
            "list", "staffcard1", group=True, chatbotCorpId=CORP, senderCorpId=CORP, robotCode=ROBOT_CODE
        )
        await sandbox.push(data)
        track = await card_in(sandbox, data["conversationId"])
        assert sandbox.calls("card/createAndDeliver")[0].json()["imGroupOpenDeliverModel"]["robotCode"] == ROBOT_CODE
        row = row_for(sandbox, track, "Isv")
        params = {"action": row["action"], "token": row["token"]}

        await press(sandbox, track, "staffcard1", params, corp_id=OTHER_CORP)  # not a member of the card's org
        assert "cal-isv-card" in sandbox.subscriptions["union-card-2"]
        assert "cal-isv-card" in sandbox.subscriptions["union-card-1"]

        await press(sandbox, track, "staffcard1", params, corp_id=CORP)
        assert "cal-isv-card" not in sandbox.subscriptions["union-card-1"]
        assert "cal-isv-card" in sandbox.subscriptions["union-card-2"]
