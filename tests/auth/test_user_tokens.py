"""BOT_CALENDAR_TOKEN=user end to end: the connect card, the OAuth redirect (forged, expired, used and foreign states
refused), the pending command, refresh, withdrawn consent, disconnect, restart; and the pure parts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

from bot.auth.sealing import Sealer, State, Unreadable
from bot.config import Config, ConfigError
from bot.sandbox.platform import Sandbox
from tests.botprocess import ROOT, BotProcess
from tests.helpers import (
    DYNO_WARNING,
    User,
    card,
    converse,
    new_calendar,
    new_user,
    running_bot,
    started_sandbox,
)
from tests.helpers_oauth import SECRET_KEY, browse, connect_link, consent, private_cards, subscribed, user_env
from tests.redisserver import RedisServer, free_port


@pytest_asyncio.fixture(scope="module")
async def platform() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as sandbox:
        yield sandbox


@pytest_asyncio.fixture(scope="module")
async def env(platform: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return user_env(platform, tmp_path_factory.mktemp("state"), free_port())


@pytest_asyncio.fixture(scope="module")
async def user_bot(platform: Sandbox, env: dict[str, str]) -> AsyncIterator[BotProcess]:
    async with running_bot(platform, {**env, "DYNO": "worker.1"}) as process:
        await process.wait_log("serving the OAuth redirect")
        yield process


@pytest_asyncio.fixture(autouse=True)
async def _clean(platform: Sandbox) -> AsyncIterator[None]:
    yield
    platform.clear_faults()


async def ask(sandbox: Sandbox, user: User, text: str) -> dict[str, Any]:
    """The card the bot answers this command with (markdown or actionCard)."""
    _, reply = await converse(sandbox, sandbox.chat(text, user.staff_id))
    return card(reply)


def with_state(callback: str, state: str) -> str:
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?authCode={query['authCode'][0]}&state={state}"


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


async def connected(sandbox: Sandbox, user: User, calendar_id: str) -> None:
    """Connect the user through the whole flow; their pending unsubscribe runs."""
    link = await connect_link(sandbox, user, f"unsubscribe {calendar_id}")
    page = await browse(await consent(sandbox, link, user))
    assert page.status_code == 200
    await sandbox.wait_for(lambda: private_cards(sandbox, user))
    assert not subscribed(sandbox, user, calendar_id)


async def test_the_connect_card_offers_dingtalks_authorize_page_and_changes_nothing(
    platform: Sandbox, user_bot: BotProcess, env: dict[str, str]
) -> None:
    user = new_user(platform)
    calendar_id = new_calendar(platform, user)

    link = await connect_link(platform, user, f"unsubscribe {calendar_id}")

    parts = urlsplit(link)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{platform.base_url}/oauth2/auth"
    assert query["redirect_uri"] == f"{env['BOT_PUBLIC_URL']}/oauth/callback"
    assert (query["response_type"], query["client_id"], query["scope"], query["prompt"]) == (
        "code",
        platform.client_id,
        "openid",
        "consent",
    )
    assert len(query["state"]) < 200 and user.staff_id not in query["state"]
    assert subscribed(platform, user, calendar_id)
    assert not [r for r in platform.calls("unsubscribe") if user.union_id in r.path]


async def test_asked_in_a_group_the_connect_card_goes_to_the_sender_privately(
    platform: Sandbox, user_bot: BotProcess
) -> None:
    user = new_user(platform)
    calendar_id = new_calendar(platform, user)
    data = platform.chat(f"unsubscribe {calendar_id}", user.staff_id, group=True)

    _, notice = await converse(platform, data)
    await platform.wait_for(lambda: private_cards(platform, user))

    (private,) = private_cards(platform, user)
    assert "Connect your DingTalk account" in private["title"] and private["singleURL"].startswith(platform.base_url)
    assert "oauth2" not in json.dumps(notice.json())  # the group sees no link
    assert subscribed(platform, user, calendar_id)


async def test_consent_runs_the_pending_command_once_and_later_commands_use_the_users_own_token(
    platform: Sandbox, user_bot: BotProcess
) -> None:
    user = new_user(platform)
    first, second = new_calendar(platform, user, "Team A"), new_calendar(platform, user, "Team B")
    link = await connect_link(platform, user, f"unsubscribe {first}")
    callback = await consent(platform, link, user)

    page = await browse(callback, "zh-CN,zh;q=0.9")
    await platform.wait_for(lambda: private_cards(platform, user))

    assert page.status_code == 200 and "Account connected" in page.text  # the command's language, not the browser's
    (pending_card,) = private_cards(platform, user)
    assert "Unsubscribed" in pending_card["title"]
    unsubscribes = [r for r in platform.calls("unsubscribe") if user.union_id in r.path]
    assert len(unsubscribes) == 1
    assert platform.token_owner(unsubscribes[0].headers["x-acs-dingtalk-access-token"]) == user.union_id

    exchanges = len(platform.calls("userAccessToken"))
    again = await browse(callback)
    assert again.status_code == 400 and "already used" in again.text
    assert len(platform.calls("userAccessToken")) == exchanges
    assert len([r for r in platform.calls("unsubscribe") if user.union_id in r.path]) == 1

    later = await ask(platform, user, f"unsubscribe {second}")
    assert "Unsubscribed" in later["title"]
    assert not subscribed(platform, user, second)
    assert len(platform.calls("userAccessToken")) == exchanges  # the cached token: no new exchange


async def test_a_forged_state_stores_nothing_and_acts_on_nothing(platform: Sandbox, user_bot: BotProcess) -> None:
    user = new_user(platform)
    calendar_id = new_calendar(platform, user)
    link = await connect_link(platform, user, f"unsubscribe {calendar_id}")
    callback = await consent(platform, link, user)
    state = state_of(callback)
    exchanges = len(platform.calls("userAccessToken"))

    signed_by_another_key = Sealer("another-key-that-is-long-enough-0123456789").encode(
        Sealer(SECRET_KEY).decode(state) or State("", "", 0)
    )
    for forged in (state[:-2] + ("AA" if not state.endswith("AA") else "BB"), "garbage", signed_by_another_key, ""):
        page = await browse(with_state(callback, forged))
        assert page.status_code == 400 and "not made by the bot" in page.text
    chinese = await browse(with_state(callback, "garbage"), "zh-CN,zh;q=0.9")  # whose it is unknown: the browser's
    assert chinese.status_code == 400 and "链接无效" in chinese.text

    assert len(platform.calls("userAccessToken")) == exchanges
    assert subscribed(platform, user, calendar_id)
    assert await connect_link(platform, user, "calendars")  # still not connected


async def test_an_expired_state_stores_nothing_and_acts_on_nothing(platform: Sandbox, user_bot: BotProcess) -> None:
    user = new_user(platform)
    calendar_id = new_calendar(platform, user)
    link = await connect_link(platform, user, f"unsubscribe {calendar_id}")
    callback = await consent(platform, link, user)
    genuine = Sealer(SECRET_KEY).decode(state_of(callback))
    assert genuine is not None and time.time() + 590 < genuine.expires_at <= time.time() + 600
    exchanges = len(platform.calls("userAccessToken"))

    expired = Sealer(SECRET_KEY).encode(State(genuine.user, genuine.nonce, int(time.time()) - 1))
    page = await browse(with_state(callback, expired))

    assert page.status_code == 400 and "more than 10 minutes old" in page.text
    assert len(platform.calls("userAccessToken")) == exchanges
    assert subscribed(platform, user, calendar_id)


async def test_a_foreign_state_stores_nothing_and_acts_on_nothing(platform: Sandbox, user_bot: BotProcess) -> None:
    asker, other = new_user(platform), new_user(platform)
    calendar_id = new_calendar(platform, asker)
    link = await connect_link(platform, asker, f"unsubscribe {calendar_id}")

    page = await browse(await consent(platform, link, other))  # someone else opens the asker's link

    assert page.status_code == 400 and "belongs to another person" in page.text
    assert subscribed(platform, asker, calendar_id)
    assert await connect_link(platform, asker, "calendars")  # neither is connected
    assert await connect_link(platform, other, "calendars")


async def test_an_expired_token_is_refreshed_and_each_new_refresh_token_is_kept(
    platform: Sandbox, user_bot: BotProcess
) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))

    for round_ in range(2):  # the sandbox takes each refresh token once: the second works only with the newest
        calendar_id = new_calendar(platform, user, f"Round {round_}")
        platform.expire_tokens()
        refreshes = len(platform.calls("userAccessToken"))
        answer = await ask(platform, user, f"unsubscribe {calendar_id}")
        assert "Unsubscribed" in answer["title"], answer
        refreshed = platform.calls("userAccessToken")[refreshes:]
        assert [r.json()["grantType"] for r in refreshed] == ["refresh_token"]


async def test_withdrawn_consent_leads_back_to_the_connect_card(platform: Sandbox, user_bot: BotProcess) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))
    calendar_id = new_calendar(platform, user)

    platform.withdraw_consent(user.union_id)  # the cached token now answers 403
    assert await connect_link(platform, user, f"unsubscribe {calendar_id}")
    assert subscribed(platform, user, calendar_id)

    refreshes = len(platform.calls("userAccessToken"))
    assert await connect_link(platform, user, f"unsubscribe {calendar_id}")  # the grant is gone: no refresh tried
    assert len(platform.calls("userAccessToken")) == refreshes


async def test_a_permission_users_tokens_lack_is_named_for_the_admin_not_offered_as_a_connect_loop(
    platform: Sandbox, user_bot: BotProcess
) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))
    calendar_id = new_calendar(platform, user)
    platform.user_scopes_missing = {"Calendar.Calendar.Write"}

    for _ in range(2):  # the grant is kept: the same card again, never the connect card
        answer = await ask(platform, user, f"unsubscribe {calendar_id}")
        assert "lacks a permission" in answer["title"] and "Calendar.Calendar.Write" in answer["text"]
        assert "btns" not in answer

    assert subscribed(platform, user, calendar_id)
    line = await user_bot.wait_log("a user's token lacks a permission: grant it to the app's users")
    assert line["scopes"] == ["Calendar.Calendar.Write"]
    assert [r.json()["grantType"] for r in platform.calls("userAccessToken")][-1] == "authorization_code"


async def test_a_refused_refresh_leads_back_to_the_connect_card(platform: Sandbox, user_bot: BotProcess) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))
    calendar_id = new_calendar(platform, user)
    platform.withdraw_consent(user.union_id)
    platform.expire_tokens()  # so the refresh is what tells

    assert await connect_link(platform, user, f"unsubscribe {calendar_id}")
    assert platform.calls("userAccessToken")[-1].json()["grantType"] == "refresh_token"
    assert subscribed(platform, user, calendar_id)


async def test_disconnect_deletes_the_users_tokens(platform: Sandbox, user_bot: BotProcess) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))

    answer = await ask(platform, user, "disconnect")
    assert "Disconnected" in answer["title"]
    calls = len(platform.calls("userAccessToken"))
    assert await connect_link(platform, user, "calendars")
    assert len(platform.calls("userAccessToken")) == calls  # nothing left to refresh with

    answer = await ask(platform, user, "断开")
    assert "未连接" in answer["title"]


async def test_grants_survive_a_restart_encrypted_at_rest(
    platform: Sandbox, user_bot: BotProcess, env: dict[str, str]
) -> None:
    user = new_user(platform)
    await connected(platform, user, new_calendar(platform, user))
    assert await user_bot.stop() == 0
    [warning] = user_bot.logs(DYNO_WARNING)  # DYNO set, no Redis: the one warning line, naming the accounts
    assert "users' connected accounts" in warning["lost_at_restart"]
    database = Path(env["BOT_STATE_DIR"]) / "bot.sqlite3"
    stored = b"".join(bytes(row[0]) for row in sqlite3.connect(database).execute("SELECT grant_blob FROM user_grants"))
    assert stored and not [secret for secret in platform.issued_secrets if secret.encode() in stored]
    assert not [secret for secret in [*platform.issued_secrets, SECRET_KEY] if secret in user_bot.output]

    calendar_id = new_calendar(platform, user)
    async with running_bot(platform, env, connections=1) as restarted:
        answer = await ask(platform, user, f"unsubscribe {calendar_id}")
        assert "Unsubscribed" in answer["title"]
        assert "without REDIS_URL" not in restarted.output


def test_user_token_mode_refuses_to_start_without_a_long_secret_key_or_a_public_address() -> None:
    base = {
        "DINGTALK_CLIENT_ID": "id",
        "DINGTALK_CLIENT_SECRET": "secret",
        "BOT_CALENDAR_TOKEN": "user",
        "BOT_PUBLIC_URL": "https://bot.example.com",
    }
    with pytest.raises(ConfigError, match="BOT_SECRET_KEY"):
        Config.from_env(base)
    with pytest.raises(ConfigError, match="BOT_SECRET_KEY"):
        Config.from_env({**base, "BOT_SECRET_KEY": "x" * 31})
    with pytest.raises(ConfigError, match="BOT_PUBLIC_URL"):
        Config.from_env({**base, "BOT_SECRET_KEY": SECRET_KEY, "BOT_PUBLIC_URL": "http://bot.example.com"})
    config = Config.from_env({**base, "BOT_SECRET_KEY": SECRET_KEY})
    assert config.user_tokens and config.oauth_client_id == "id" and config.oauth_client_secret == "secret"
    separate = Config.from_env(
        {**base, "BOT_SECRET_KEY": SECRET_KEY, "DINGTALK_OAUTH_CLIENT_ID": "p", "DINGTALK_OAUTH_CLIENT_SECRET": "q"}
    )
    assert (separate.oauth_client_id, separate.oauth_client_secret) == ("p", "q")


def test_a_sealed_grant_opens_only_for_its_owner_with_its_key() -> None:
    sealer = Sealer(SECRET_KEY)
    blob = sealer.seal("corp:alice", b"refresh")

    assert sealer.open("corp:alice", blob) == b"refresh" and b"refresh" not in blob
    for owner, key in (("corp:bob", SECRET_KEY), ("corp:alice", SECRET_KEY + "x")):
        with pytest.raises(Unreadable):
            Sealer(key).open(owner, blob)
    with pytest.raises(Unreadable):
        sealer.open("corp:alice", blob[:-1] + bytes([blob[-1] ^ 1]))


def test_a_state_is_read_back_only_as_signed() -> None:
    sealer = Sealer(SECRET_KEY)
    state = sealer.sign("corp:alice", 600)
    text = sealer.encode(state)

    assert sealer.decode(text) == state
    tampered = Sealer(SECRET_KEY).encode(State("corp:bob", state.nonce, state.expires_at)).rpartition(".")[0]
    assert sealer.decode(tampered + "." + text.rpartition(".")[2]) is None
    assert sealer.decode(text + "x" * 400) is None


async def test_the_demo_shows_the_connect_flow_in_user_token_mode() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "demo",
        "--user-tokens",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(demo.communicate(), 60)
    transcript = out.decode()

    assert demo.returncode == 0, err.decode()
    assert transcript.count("Connect my account") >= 3
    assert transcript.count("browser (200)> Account connected") == 2
    assert transcript.count("bot (privately: the command that waited)") == 2
    assert "Disconnected" in transcript


async def test_with_redis_a_grant_made_on_one_dyno_serves_another(redis_server: RedisServer, tmp_path: Path) -> None:
    async with started_sandbox() as sandbox:
        user = new_user(sandbox)
        port = free_port()
        shared = {"REDIS_URL": redis_server.url}
        first_env = {**user_env(sandbox, tmp_path / "first", port), **shared, "DYNO": "web.1"}
        async with running_bot(sandbox, first_env) as first:
            await first.wait_log("serving the OAuth redirect")
            await connected(sandbox, user, new_calendar(sandbox, user))
        assert "without REDIS_URL" not in first.output

        sandbox.expire_tokens()  # the other dyno refreshes with the grant it finds in Redis
        calendar_id = new_calendar(sandbox, user)
        async with running_bot(sandbox, {**user_env(sandbox, tmp_path / "second", free_port()), **shared}):
            answer = await ask(sandbox, user, f"unsubscribe {calendar_id}")
        assert "Unsubscribed" in answer["title"]
        assert sandbox.calls("userAccessToken")[-1].json()["grantType"] == "refresh_token"
