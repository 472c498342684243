"""A third-party enterprise (ISV) app end to end: the real bot serving several organizations of the sandbox, with the
suite ticket, each organization's own token, and organizations that never authorized or removed the app."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.auth.api import DingTalkApi
from bot.auth.isv import RE_PUSH_ADVICE, IsvAuthorizer
from bot.config import Config
from bot.dingtalk.client import DingTalkClient
from bot.dingtalk.http import AiohttpTransport
from bot.models import Message
from bot.sandbox.http import Recorded
from bot.sandbox.platform import Sandbox
from bot.stores.suite_tickets import MemorySuiteTickets
from bot.stores.tokens import MemoryTokens
from tests.botprocess import ROOT, BotProcess
from tests.helpers import BOT_ENV, card, converse, pressed, running_bot, started_sandbox
from tests.redisserver import RedisServer

ROBOT_CODE = "dingisvrobot"  # an ISV robot's own code: not the SuiteKey
EVENT_OK = {"status": "SUCCESS", "message": "ok"}
_numbers = itertools.count(1)


@pytest_asyncio.fixture
async def platform() -> AsyncIterator[Sandbox]:
    async with started_sandbox(robot_codes={ROBOT_CODE}) as sandbox:
        yield sandbox


def isv_env(state_dir: Path, redis_url: str = "") -> dict[str, str]:
    """An ISV bot's settings: state in `state_dir`, or in Redis when `redis_url` is given."""
    return {**BOT_ENV, "DINGTALK_APP_TYPE": "isv", "BOT_STATE_DIR": str(state_dir), "REDIS_URL": redis_url}


@pytest_asyncio.fixture
async def isv_bot(platform: Sandbox, tmp_path: Path) -> AsyncIterator[BotProcess]:
    async with running_bot(platform, isv_env(tmp_path)) as process:
        yield process


def employee(sandbox: Sandbox, corp_id: str, staff_id: str = "") -> tuple[str, str]:
    """A new employee of `corp_id` following one public calendar: (staff id, calendar id)."""
    number = next(_numbers)
    staff_id = staff_id or f"staff{number}"
    union_id = f"union-{corp_id}-{staff_id}-{number}"
    sandbox.add_org_user(corp_id, staff_id, union_id)
    calendar_id = f"cal-{corp_id}-{number}"
    sandbox.add_calendar(calendar_id, f"Holidays {number}")
    sandbox.subscribe(union_id, calendar_id)
    return staff_id, calendar_id


def chat_in(sandbox: Sandbox, corp_id: str, staff_id: str, text: str) -> dict[str, Any]:
    """A message to the ISV robot from an employee of `corp_id`."""
    return sandbox.chat(text, staff_id, chatbotCorpId=corp_id, senderCorpId=corp_id, robotCode=ROBOT_CODE)


async def ask(sandbox: Sandbox, corp_id: str, staff_id: str, text: str) -> str:
    """The markdown of the card the bot answered with."""
    _, reply = await converse(sandbox, chat_in(sandbox, corp_id, staff_id, text))
    return str(card(reply)["text"])


def ack_data(ack: dict[str, Any]) -> Any:
    return json.loads(ack["data"])


def token_of(request: Recorded) -> str:
    return request.headers.get("x-acs-dingtalk-access-token") or request.query.get("access_token", "")


async def ready(sandbox: Sandbox, *corp_ids: str) -> None:
    """The suite ticket is pushed and the organizations authorize the app; every event is ACKed SUCCESS."""
    assert ack_data(await sandbox.wait_ack(await sandbox.push_suite_ticket())) == EVENT_OK
    for corp_id in corp_ids:
        await sandbox.wait_ack(await sandbox.authorize_corp(corp_id))


async def test_ticket_then_the_organization_token_then_the_unsubscribe(platform: Sandbox, isv_bot: BotProcess) -> None:
    await ready(platform, "dingcorpa")
    staff_id, calendar_id = employee(platform, "dingcorpa")

    text = await ask(platform, "dingcorpa", staff_id, f"unsubscribe {calendar_id}")

    assert calendar_id in text and "Unsubscribed" in text
    [gateway] = platform.calls("gateway")
    assert {"type": "EVENT", "topic": "*"} in gateway.json()["subscriptions"]
    [fetch] = platform.calls("corpAccessToken")
    assert fetch.json() == {
        "suiteKey": platform.client_id,
        "suiteSecret": platform.client_secret,
        "authCorpId": "dingcorpa",
        "suiteTicket": platform.suite_ticket,
    }
    [unsubscribe] = platform.calls("unsubscribe")
    assert token_of(unsubscribe) in platform.tokens_of("dingcorpa")
    assert calendar_id not in platform.subscriptions[platform.org_users[("dingcorpa", staff_id)]]


async def test_every_event_is_acked_with_success_and_ok(platform: Sandbox, isv_bot: BotProcess) -> None:
    for event_type, data in [
        ("org_suite_auth", {"authCorpInfo": {"corpid": "dingcorpe", "corpName": "E"}, "permanentCode": "p"}),
        ("org_suite_change", {"authCorpInfo": {"corpid": "dingcorpe", "corpName": "E"}}),
        ("org_micro_app_stop", {"agentId": 1}),
        ("something_new", {}),
    ]:
        ack = await platform.wait_ack(await platform.push_event(event_type, data, "dingcorpe"))
        assert ack["code"] == 200 and ack_data(ack) == EVENT_OK, event_type
    await isv_bot.wait_log("organization authorized the app", corp_id="dingcorpe", event_type="org_suite_change")
    assert "permanentCode" not in isv_bot.output and '"p"' not in isv_bot.output


async def test_two_organizations_never_share_a_token_or_a_cache_entry(platform: Sandbox, isv_bot: BotProcess) -> None:
    await ready(platform, "dingcorpa", "dingcorpb")
    # the same staff id in both organizations: two different people
    _, calendar_a = employee(platform, "dingcorpa", "manager")
    _, calendar_b = employee(platform, "dingcorpb", "manager")

    for _ in range(2):
        assert calendar_a in await ask(platform, "dingcorpa", "manager", "list")
        assert calendar_b in await ask(platform, "dingcorpb", "manager", "list")

    fetched = sorted(request.json()["authCorpId"] for request in platform.calls("corpAccessToken"))
    assert fetched == ["dingcorpa", "dingcorpb"]  # one per organization, each reused
    lookups = platform.calls("user/get")
    assert len(lookups) == 2  # each organization's "manager" looked up once: not one cache entry for both
    assert {token_of(lookup) for lookup in lookups} == platform.tokens_of("dingcorpa") | platform.tokens_of("dingcorpb")
    for corp_id in ("dingcorpa", "dingcorpb"):
        union_id = platform.org_users[(corp_id, "manager")]
        calls = [r for r in platform.calls("calendars") if r.path == f"/v1.0/calendar/users/{union_id}/calendars"]
        assert len(calls) == 2 and {token_of(call) for call in calls} == platform.tokens_of(corp_id)
    handled = isv_bot.logs("message handled")
    assert {entry["corp_id"] for entry in handled} == {"dingcorpa", "dingcorpb"}


async def test_the_rate_limit_counts_each_organizations_sender_apart(platform: Sandbox, tmp_path: Path) -> None:
    async with running_bot(platform, {**isv_env(tmp_path), "BOT_USER_RATE": "1"}):
        await ready(platform, "dingcorpa", "dingcorpb")
        employee(platform, "dingcorpa", "manager")
        employee(platform, "dingcorpb", "manager")
        assert "list" in (await ask(platform, "dingcorpa", "manager", "help")).lower()
        assert "list" in (await ask(platform, "dingcorpb", "manager", "help")).lower()  # not "slow down"
        assert "list" not in (await ask(platform, "dingcorpa", "manager", "help")).lower()


async def test_an_isv_admin_is_named_with_their_organization_and_audits_only_it(
    platform: Sandbox, tmp_path: Path
) -> None:
    async with running_bot(platform, {**isv_env(tmp_path), "BOT_ADMINS": "dingcorpa:manager"}):
        await ready(platform, "dingcorpa", "dingcorpb")
        for corp_id in ("dingcorpa", "dingcorpb"):
            employee(platform, corp_id, "manager")
            platform.add_calendar(f"lunch-{corp_id}", "Lunch Menu")
            platform.subscribe(platform.org_users[(corp_id, "manager")], f"lunch-{corp_id}")
            assert "Unsubscribed" in await ask(platform, corp_id, "manager", "unsubscribe Lunch Menu")

        assert "admins" in (await ask(platform, "dingcorpb", "manager", "audit Lunch Menu")).lower()
        audit = await ask(platform, "dingcorpa", "manager", "audit Lunch Menu")

    assert "The latest 1 changes" in audit  # of the two changes of a "Lunch Menu", only this organization's


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_an_isv_admins_audit_picks_their_organization_before_the_limit(
    kind: str, platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {
        **isv_env(tmp_path, redis_server.url if kind == "redis" else ""),
        "BOT_ADMINS": "dingcorpa:manager",
        "BOT_USER_RATE": "100",
    }
    async with running_bot(platform, env):
        await ready(platform, "dingcorpa", "dingcorpb")
        for corp_id in ("dingcorpa", "dingcorpb"):
            employee(platform, corp_id, "manager")
            platform.add_calendar(f"lunch-{corp_id}", "Lunch Menu")
            platform.subscribe(platform.org_users[(corp_id, "manager")], f"lunch-{corp_id}")
        assert "Unsubscribed" in await ask(platform, "dingcorpa", "manager", "unsubscribe Lunch Menu")
        for _ in range(11):  # another organization's 22 newer changes of a calendar of the same name
            assert "Unsubscribed" in await ask(platform, "dingcorpb", "manager", "unsubscribe lunch-dingcorpb")
            assert "Subscribed again" in await ask(platform, "dingcorpb", "manager", "resubscribe lunch-dingcorpb")

        audit = await ask(platform, "dingcorpa", "manager", "audit Lunch Menu")

    assert "The latest 1 changes" in audit and "unsubscribe **Lunch Menu**" in audit


async def test_before_any_ticket_a_command_gets_a_clear_card_and_the_admin_a_clear_line(
    platform: Sandbox, isv_bot: BotProcess
) -> None:
    platform.authorized_corps.add("dingcorpa")
    staff_id, calendar_id = employee(platform, "dingcorpa")

    text = await ask(platform, "dingcorpa", staff_id, f"unsubscribe {calendar_id}")

    assert "not ready" in text and "push the ticket again" in text
    assert platform.calls("corpAccessToken") == [] and platform.calls("unsubscribe") == []
    await isv_bot.wait_log(f"no organization token without a suite ticket; {RE_PUSH_ADVICE}", corp_id="dingcorpa")

    await ready(platform)
    assert "Unsubscribed" in await ask(platform, "dingcorpa", staff_id, f"unsubscribe {calendar_id}")


async def test_an_organization_that_never_authorized_gets_the_not_authorized_card(
    platform: Sandbox, isv_bot: BotProcess
) -> None:
    await ready(platform, "dingcorpa")
    staff_id, calendar_id = employee(platform, "dingcorpz")

    text = await ask(platform, "dingcorpz", staff_id, f"unsubscribe {calendar_id}")

    assert "has not authorized this app" in text
    assert [r.json()["authCorpId"] for r in platform.calls("corpAccessToken")] == ["dingcorpz"]
    assert platform.calls("unsubscribe") == []


async def test_a_removed_organization_loses_its_token_and_data_and_gets_the_not_authorized_card(
    platform: Sandbox, isv_bot: BotProcess
) -> None:
    await ready(platform, "dingcorpa", "dingcorpb")
    staff_a, calendar_a = employee(platform, "dingcorpa")
    staff_b, calendar_b = employee(platform, "dingcorpb")
    assert calendar_a in await ask(platform, "dingcorpa", staff_a, "list")
    assert calendar_b in await ask(platform, "dingcorpb", staff_b, "list")

    ack = await platform.wait_ack(await platform.relieve_corp("dingcorpa"))

    assert ack_data(ack) == EVENT_OK
    await isv_bot.wait_log("organization removed the app: its token and data dropped", corp_id="dingcorpa")
    assert "has not authorized this app" in await ask(platform, "dingcorpa", staff_a, "list")
    assert calendar_b in await ask(platform, "dingcorpb", staff_b, "list")  # the other organization is untouched
    fetches = [r.json()["authCorpId"] for r in platform.calls("corpAccessToken")]
    assert sorted(fetches) == ["dingcorpa", "dingcorpa", "dingcorpb"]  # the dropped token was not used again

    # authorized again: its people are looked up afresh (their cached unionIds went with the organization)
    await platform.wait_ack(await platform.authorize_corp("dingcorpa"))
    assert calendar_a in await ask(platform, "dingcorpa", staff_a, "list")
    assert [r.json()["userid"] for r in platform.calls("user/get")] == [staff_a, staff_b, staff_a]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_the_same_msg_id_in_two_organizations_is_two_messages_and_a_repeat_is_one(
    kind: str, platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = isv_env(tmp_path, redis_server.url if kind == "redis" else "")
    async with running_bot(platform, env) as process:
        await ready(platform, "dingcorpa", "dingcorpb")
        messages = []
        for corp_id in ("dingcorpa", "dingcorpb"):
            staff_id, _ = employee(platform, corp_id)
            messages.append(chat_in(platform, corp_id, staff_id, "list") | {"msgId": "msg-shared-id"})

        for data in messages:
            await converse(platform, data)
        await platform.wait_ack(await platform.push(messages[0]))  # DingTalk's repeat of the first one
        await process.wait_log("duplicate message dropped", msg_id="msg-shared-id")

    assert [len(platform.replies_to(data)) for data in messages] == [1, 1]
    assert len(process.logs("message handled")) == 2


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_after_removal_and_a_new_authorization_an_old_confirm_does_nothing_and_nothing_of_it_is_kept(
    kind: str, platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = isv_env(tmp_path, redis_server.url if kind == "redis" else "")
    async with running_bot(platform, env) as process:
        await ready(platform, "dingcorpa", "dingcorpb")
        staff_a, calendar_a = employee(platform, "dingcorpa")
        staff_b, _ = employee(platform, "dingcorpb")
        _, preview = await converse(platform, chat_in(platform, "dingcorpa", staff_a, "unsubscribe all"))
        _, kept = await converse(platform, chat_in(platform, "dingcorpb", staff_b, "unsubscribe all"))
        assert "Unsubscribe from 1 calendars?" in card(preview)["title"] == card(kept)["title"]

        await platform.wait_ack(await platform.relieve_corp("dingcorpa"))
        await process.wait_log("organization removed the app: its token and data dropped", corp_id="dingcorpa")
        if kind == "redis":
            client = redis_server.client()
            left = [key async for key in client.scan_iter(match="*dingcorpa*")]
            await client.aclose()
            # what stays: the audit records, and the markers that tell a repeated msgId (they expire on their own)
            assert all(":audit:" in key or ":jmsg:" in key or ":msg:" in key for key in left), left
        else:
            with sqlite3.connect(tmp_path / "bot.sqlite3") as database:
                rows = database.execute("SELECT COUNT(*) FROM previews WHERE owner LIKE 'dingcorpa:%'").fetchone()
            assert rows == (0,)
        await platform.wait_ack(await platform.authorize_corp("dingcorpa"))
        confirm = card(preview)["btns"][0]["actionURL"]
        _, late = await converse(platform, pressed_in(platform, "dingcorpa", staff_a, confirm))
        other_confirm = card(kept)["btns"][0]["actionURL"]
        _, other = await converse(platform, pressed_in(platform, "dingcorpb", staff_b, other_confirm))

        assert card(late)["title"] == "⌛ Nothing to confirm"
        assert calendar_a in platform.subscriptions[platform.org_users[("dingcorpa", staff_a)]]
        assert "✅ unsubscribed" in card(other)["text"]  # the other organization's preview is untouched


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_after_removal_a_new_authorization_starts_with_fresh_per_sender_windows(
    kind: str, platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {**isv_env(tmp_path, redis_server.url if kind == "redis" else ""), "BOT_USER_RATE": "2"}
    async with running_bot(platform, env) as process:
        await ready(platform, "dingcorpa")
        staff_id, _ = employee(platform, "dingcorpa")
        for _ in range(2):
            assert "list" in (await ask(platform, "dingcorpa", staff_id, "help")).lower()

        await platform.wait_ack(await platform.relieve_corp("dingcorpa"))
        await process.wait_log("organization removed the app: its token and data dropped", corp_id="dingcorpa")
        await platform.wait_ack(await platform.authorize_corp("dingcorpa"))

        assert "list" in (await ask(platform, "dingcorpa", staff_id, "help")).lower()  # not "slow down"


async def test_a_removal_handled_by_one_dyno_is_forgotten_by_the_other(
    platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = isv_env(tmp_path, redis_server.url)
    other_env = {**env, "BOT_STATE_DIR": str(tmp_path / "second")}
    async with running_bot(platform, env) as first, running_bot(platform, other_env, connections=2) as second:
        await ready(platform, "dingcorpa")
        staff_id, calendar_id = employee(platform, "dingcorpa")
        listed = chat_in(platform, "dingcorpa", staff_id, "list")
        _, reply = await converse(platform, listed, socket=1)  # the second dyno keeps near copies of the token
        assert calendar_id in card(reply)["text"]  # and of the unionId

        await platform.wait_ack(await platform.relieve_corp("dingcorpa", socket=0))
        await first.wait_log("organization removed the app: its token and data dropped", corp_id="dingcorpa")
        await second.wait_log("copies of a removed organization dropped", corp_id="dingcorpa")
        await platform.wait_ack(await platform.authorize_corp("dingcorpa"))
        _, again = await converse(platform, chat_in(platform, "dingcorpa", staff_id, "list"), socket=1)

    assert calendar_id in card(again)["text"]
    assert [r.json()["userid"] for r in platform.calls("user/get")] == [staff_id, staff_id]  # looked up afresh


def pressed_in(sandbox: Sandbox, corp_id: str, staff_id: str, url: str) -> dict[str, Any]:
    """What the client sends as the user of `corp_id` pressing a button with this link."""
    return pressed(sandbox, url, staff_id) | {
        "chatbotCorpId": corp_id,
        "senderCorpId": corp_id,
        "robotCode": ROBOT_CODE,
    }


async def test_a_repeated_event_is_handled_once(platform: Sandbox, isv_bot: BotProcess) -> None:
    first = await platform.push_suite_ticket("ticket-one", event_id="event-1")
    again = await platform.push_suite_ticket("ticket-two", event_id="event-1")  # a re-push of the same event

    assert ack_data(await platform.wait_ack(first)) == ack_data(await platform.wait_ack(again)) == EVENT_OK
    await isv_bot.wait_log("event repeated, skipped", event_id="event-1")
    assert len(isv_bot.logs("stored the new suite ticket")) == 1


async def test_the_ticket_survives_a_restart_and_is_never_logged(platform: Sandbox, tmp_path: Path) -> None:
    async with running_bot(platform, isv_env(tmp_path)) as first:
        await ready(platform, "dingcorpa")
        await first.wait_log("stored the new suite ticket")
    staff_id, calendar_id = employee(platform, "dingcorpa")
    async with running_bot(platform, isv_env(tmp_path), connections=1) as second:
        assert "Unsubscribed" in await ask(platform, "dingcorpa", staff_id, f"unsubscribe {calendar_id}")
    for secret in platform.issued_secrets:
        assert secret not in first.output and secret not in second.output


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_an_older_tickets_late_event_never_replaces_the_newer_one_also_after_a_restart(
    kind: str, platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = isv_env(tmp_path, redis_server.url if kind == "redis" else "")
    staff_id, calendar_id = employee(platform, "dingcorpa")
    async with running_bot(platform, env) as first:
        await ready(platform, "dingcorpa")
        await platform.wait_ack(await platform.push_suite_ticket())  # the newer ticket, DingTalk's only valid one
        await platform.wait_ack(await platform.push_superseded_ticket())
        assert "Your subscribed calendars" in await ask(platform, "dingcorpa", staff_id, "list")
        await first.wait_log("late event of an older suite ticket, ignored")
    async with running_bot(platform, env, connections=1) as second:
        assert ack_data(await platform.wait_ack(await platform.push_superseded_ticket())) == EVENT_OK
        assert "Unsubscribed" in await ask(platform, "dingcorpa", staff_id, f"unsubscribe {calendar_id}")
        await second.wait_log("late event of an older suite ticket, ignored")
    assert {r.json()["suiteTicket"] for r in platform.calls("corpAccessToken")} == {platform.suite_ticket}


async def test_a_ticket_born_in_an_absurd_future_never_holds_back_the_newer_ones(
    platform: Sandbox, isv_bot: BotProcess
) -> None:
    staff_id, _ = employee(platform, "dingcorpa")
    await ready(platform, "dingcorpa")
    platform.suite_ticket = "ticket-with-an-odd-born-time"  # DingTalk made it, with a glitch in its header
    platform.issued_secrets.append(platform.suite_ticket)
    await platform.wait_ack(
        await platform.push_event("suite_ticket", {"suiteTicket": platform.suite_ticket}, born_ms=10**30)
    )
    await platform.wait_ack(await platform.push_suite_ticket())  # the next one (or the admin's re-push): the valid one

    assert "Your subscribed calendars" in await ask(platform, "dingcorpa", staff_id, "list")
    assert {r.json()["suiteTicket"] for r in platform.calls("corpAccessToken")} == {platform.suite_ticket}


async def test_robot_sends_use_the_messages_robot_code(platform: Sandbox, isv_bot: BotProcess) -> None:
    await ready(platform, "dingcorpa")
    staff_id, _ = employee(platform, "dingcorpa")
    data = chat_in(platform, "dingcorpa", staff_id, "help")
    data["sessionWebhookExpiredTime"] = 0  # the webhook has expired: the reply goes through the robot OpenAPI

    _, reply = await converse(platform, data)

    assert reply.api == "batchSend" and reply.json()["robotCode"] == ROBOT_CODE
    assert token_of(reply) in platform.tokens_of("dingcorpa")


async def test_a_message_without_its_robot_code_is_never_answered_as_the_suite(
    platform: Sandbox, isv_bot: BotProcess
) -> None:
    await ready(platform, "dingcorpa")
    staff_id, _ = employee(platform, "dingcorpa")
    data = chat_in(platform, "dingcorpa", staff_id, "help")
    data["sessionWebhookExpiredTime"] = 0
    del data["robotCode"]  # documented as present in every callback; the bot must not guess it

    await platform.wait_ack(await platform.push(data))

    handled = await isv_bot.wait_log("message handled", msg_id=data["msgId"])
    assert handled["route"] == "failed" and handled["reply_code"] == "missingRobotCode"
    sends = platform.calls("batchSend") + platform.calls("groupSend")
    assert all(send.json()["robotCode"] != platform.client_id for send in sends)


async def test_an_event_that_cannot_be_kept_is_acked_later_so_dingtalk_pushes_it_again(
    platform: Sandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    async with running_bot(platform, isv_env(tmp_path, redis_server.url)) as process:
        redis_server.stop()  # what must survive a restart never falls back to memory

        ack = await platform.wait_ack(await platform.push_suite_ticket())

        assert ack_data(ack)["status"] == "LATER"
        await process.wait_log("event not handled, DingTalk will push it again", event_type="suite_ticket")


@pytest.mark.parametrize("app_type", ["internal", ""])
async def test_an_internal_app_subscribes_to_no_events(app_type: str, tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        env = {**BOT_ENV, "BOT_STATE_DIR": str(tmp_path), "DINGTALK_APP_TYPE": app_type}
        async with running_bot(sandbox, env):
            [gateway] = sandbox.calls("gateway")
            assert gateway.json()["subscriptions"] == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
            ack = await sandbox.wait_ack(await sandbox.push_suite_ticket())
            assert ack_data(ack) == {"status": "SUCCESS", "message": "not subscribed"}


async def test_the_isv_demo_serves_two_organizations_and_refuses_the_others() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", "--isv", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    transcript = (await asyncio.wait_for(demo.communicate(), 60))[0].decode()

    assert demo.returncode == 0
    assert transcript.count("The bot is not ready yet") == 1
    assert "Acme Holidays" in transcript and "Globex Holidays" in transcript
    assert "organization tokens fetched: dingacme, dingglobex: one per organization" in transcript
    assert transcript.count("Your organization has not authorized this app") == 2
    assert transcript.count('{"status": "SUCCESS", "message": "ok"}') == 4


# --- the parts, one by one ----------------------------------------------------------------------------------------


class SlotRecorder:
    """A per-API limiter of the test's own that notes which limit each call was counted against."""

    def __init__(self) -> None:
        self.apis: list[str] = []

    def slot(self, api: str) -> AbstractAsyncContextManager[float]:
        self.apis.append(api)
        return contextlib.nullcontext(0.0)


async def test_each_organizations_calls_count_against_its_own_per_api_limits(platform: Sandbox) -> None:
    platform.authorized_corps.add("dingcorpa")
    platform.suite_ticket = "ticket-1"
    staff_id, _ = employee(platform, "dingcorpa")
    config = Config.from_env({**platform.bot_env(), "DINGTALK_APP_TYPE": "isv"})
    limiter = SlotRecorder()
    client = DingTalkClient(config, AiohttpTransport(4), limiter)
    tickets = MemorySuiteTickets()
    await tickets.store(platform.client_id, "ticket-1")
    authorizer = IsvAuthorizer(platform.client_id, MemoryTokens(), tickets, client)
    message = Message(**{**_MESSAGE, "chatbot_corp_id": "dingcorpa"})
    try:
        api = DingTalkApi(client, await authorizer.authorize(message))
        await api.list_calendars(await api.union_id(staff_id))
    finally:
        await client.aclose()

    assert limiter.apis == ["corpAccessToken", "dingcorpa/user/get", "dingcorpa/calendars"]


_MESSAGE: dict[str, Any] = {
    "msg_id": "m1",
    "text": "list",
    "msgtype": "text",
    "conversation_type": "1",
    "conversation_id": "c1",
    "sender_staff_id": "s1",
    "sender_union_id": "",
    "sender_id": "s1",
    "sender_corp_id": "",
    "chatbot_corp_id": "",
    "session_webhook": "",
    "session_webhook_expires_ms": 0,
}
