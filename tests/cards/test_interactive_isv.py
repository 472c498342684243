"""Interactive cards of a third-party enterprise (ISV) app: its robot's own code, each organization's presses apart."""

from __future__ import annotations

from pathlib import Path

from tests.cards.interactive_bot import card_in, press, row_for, running_app
from tests.helpers import started_sandbox

ROBOT_CODE = "dingisvcardrobot"  # an ISV robot's own code: not the SuiteKey
CORP, OTHER_CORP = "dingcardcorpa", "dingcardcorpb"


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
