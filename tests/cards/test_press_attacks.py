"""Hostile and flaky presses through the real bot and the sandbox: what the card never offered changes nothing."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from pathlib import Path

from bot.sandbox.answers import json_answer
from bot.sandbox.platform import Sandbox
from bot.stores.build import DATABASE_FILE
from tests.cards.interactive_bot import card_in, cards_sandbox, group_card, press, row_for, running_app
from tests.helpers import new_calendar, new_user, unsubscribe_calls
from tests.helpers_oauth import browse, connect_link, consent, user_env
from tests.redisserver import free_port


def subscribed(sandbox: Sandbox, union_id: str, calendar_id: str) -> bool:
    return calendar_id in sandbox.subscriptions[union_id]


async def test_a_row_token_spelled_otherwise_than_the_card_spelled_it_is_not_offered(tmp_path: Path) -> None:
    async with cards_sandbox() as sandbox, running_app(sandbox, tmp_path):
        asker, other = new_user(sandbox), new_user(sandbox)
        calendar = new_calendar(sandbox, asker, "Board")
        sandbox.subscribe(other.union_id, calendar)
        track = await group_card(sandbox, asker.staff_id)
        row = row_for(sandbox, track, "Board")
        assert row["token"] == "0"
        requests = len(sandbox.requests)

        # the same row spelled otherwise: never offered, and each would pass for a press not made before
        for token in ("00", "000", "\u0660", "\uff10"):  # a leading zero, ARABIC-INDIC and FULLWIDTH DIGIT ZERO
            assert await press(sandbox, track, other.staff_id, {"action": row["action"], "token": token}) == {}

        assert sandbox.requests[requests:] == []
        assert subscribed(sandbox, other.union_id, calendar) and unsubscribe_calls(sandbox, other.union_id) == []


async def test_a_press_from_another_organization_changes_nothing_not_even_the_public_count(tmp_path: Path) -> None:
    async with cards_sandbox() as sandbox, running_app(sandbox, tmp_path):
        asker, member = new_user(sandbox), new_user(sandbox)
        calendar = new_calendar(sandbox, asker, "Foreign")
        sandbox.subscribe(member.union_id, calendar)
        track = await group_card(sandbox, asker.staff_id)
        row = row_for(sandbox, track, "Foreign")
        params = {"action": row["action"], "token": row["token"]}
        requests = len(sandbox.requests)

        # the member's own staff id, pressed from another organization: not the card's organization's member
        response = await press(sandbox, track, member.staff_id, params, corp_id="dingforeigncorp0001")

        assert response == {} and sandbox.requests[requests:] == []
        assert sandbox.cards.instances[track].public["status"] == "" and sandbox.cards.instances[track].versions == 1
        assert subscribed(sandbox, member.union_id, calendar)


async def test_a_one_to_one_card_is_pressed_by_its_asker_only(tmp_path: Path) -> None:
    async with cards_sandbox() as sandbox, running_app(sandbox, tmp_path):
        asker, stranger = new_user(sandbox), new_user(sandbox)
        calendar = new_calendar(sandbox, asker, "Mine")
        sandbox.subscribe(stranger.union_id, calendar)
        data = sandbox.chat("list", asker.staff_id)
        await sandbox.push(data)
        track = await card_in(sandbox, asker.staff_id)  # IM_ROBOT.<asker>: no one else sees it
        row = row_for(sandbox, track, "Mine")
        params = {"action": row["action"], "token": row["token"]}
        requests = len(sandbox.requests)

        response = await press(sandbox, track, stranger.staff_id, params)  # a userId that is not in that chat

        assert response == {} and sandbox.requests[requests:] == []
        assert subscribed(sandbox, stranger.union_id, calendar) and subscribed(sandbox, asker.union_id, calendar)
        await press(sandbox, track, asker.staff_id, params)
        assert not subscribed(sandbox, asker.union_id, calendar)


async def test_a_refused_put_sends_the_pressers_result_to_them_privately(tmp_path: Path) -> None:
    async with cards_sandbox() as sandbox, running_app(sandbox, tmp_path):
        asker, member = new_user(sandbox), new_user(sandbox)
        calendar = new_calendar(sandbox, asker, "Refused")
        sandbox.subscribe(member.union_id, calendar)
        data = sandbox.chat("list", asker.staff_id, group=True)
        track = await group_card(sandbox, data)
        row = row_for(sandbox, track, "Refused")
        sandbox.api_latency["unsubscribe"] = 2.0  # beyond the answer window: the result goes by PUT
        refusal = {"code": "param.cardNotExist", "message": "param.cardNotExist", "requestid": "R1"}
        sandbox.answer_next("card/update", json_answer(400, refusal))

        assert await press(sandbox, track, member.staff_id, {"action": row["action"], "token": row["token"]}) == {}
        private = await card_in(sandbox, member.staff_id)  # the presser's own result, 1:1, with its Undo

        assert not subscribed(sandbox, member.union_id, calendar)
        assert len(sandbox.calls("card/update")) == 1
        seen = sandbox.cards.seen_by(private, member.staff_id)
        (undo,) = json.loads(seen["rows"])
        assert "Unsubscribed" in seen["body"] and undo["action"] == "resubscribe"
        assert sandbox.cards.in_space(data["conversationId"]) == [track]  # nothing more in the group
        assert sandbox.calls("groupSend") == [] and sandbox.replies_to(data) == []


async def test_a_press_that_needs_the_pressers_consent_shows_them_the_connect_link(tmp_path: Path) -> None:
    async with cards_sandbox() as sandbox:
        env = user_env(sandbox, tmp_path, free_port())
        async with running_app(sandbox, tmp_path, **env):
            asker, colleague = new_user(sandbox), new_user(sandbox)
            calendar = new_calendar(sandbox, asker, "Consent")
            sandbox.subscribe(colleague.union_id, calendar)
            await browse(await consent(sandbox, await connect_link(sandbox, asker, "list"), asker))
            await card_in(sandbox, asker.staff_id)  # the asker's pending list, now theirs to run
            track = await group_card(sandbox, asker.staff_id)
            row = row_for(sandbox, track, "Consent")

            await press(sandbox, track, colleague.staff_id, {"action": row["action"], "token": row["token"]})

            result = sandbox.cards.seen_by(track, colleague.staff_id)["result"]
            assert "Connect your DingTalk account" in result
            assert "result" not in sandbox.cards.seen_by(track, asker.staff_id)  # the link is the colleague's own
            (link,) = re.findall(r"\]\((http[^)\s]+)\)", result)
            assert link.startswith(f"{sandbox.base_url}/oauth2/auth?")
            page = await browse(await consent(sandbox, link, colleague))
            assert page.status_code == 200
            await sandbox.wait_for(lambda: not subscribed(sandbox, colleague.union_id, calendar))
            assert subscribed(sandbox, asker.union_id, calendar)


async def test_a_card_store_failing_after_the_card_was_made_still_shows_the_presser_their_result(
    tmp_path: Path,
) -> None:
    async with cards_sandbox() as sandbox, running_app(sandbox, tmp_path):
        user = new_user(sandbox)
        calendar = new_calendar(sandbox, user, "Broken")
        track = await group_card(sandbox, user.staff_id)
        row = row_for(sandbox, track, "Broken")
        with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_FILE)) as database:  # the cards' Undo and users
            database.executescript("DROP TABLE card_offers; DROP TABLE card_users;")

        response = await press(sandbox, track, user.staff_id, {"action": row["action"], "token": row["token"]})

        assert not subscribed(sandbox, user.union_id, calendar)  # the command ran: its result reaches the presser
        seen = sandbox.cards.seen_by(track, user.staff_id)
        assert "Unsubscribed" in seen["result"] and seen["has_undo"] == "false"  # no Undo its store cannot keep
        assert response["userPrivateData"]["cardParamMap"]["result"] == seen["result"]
