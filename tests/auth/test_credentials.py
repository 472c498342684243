"""Credentials per message: a cached token fetched once per key at a time, refetched once when DingTalk rejects it."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

import pytest

from bot.auth.credentials import (
    TOKEN_MARGIN_SECONDS,
    TOKEN_MIN_REUSE_SECONDS,
    AppAuthorizer,
    CachedToken,
    TokenFetch,
)
from bot.dingtalk.errors import DingTalkError, Refused
from bot.models import Message
from bot.sandbox.platform import Sandbox
from bot.stores.tokens import MemoryTokens
from tests.botprocess import BotProcess
from tests.helpers import calendar_calls, converse, new_calendar, new_user

REJECTED = Refused(401, "InvalidAuthentication", "不合法的access_token")


class Platform:
    """Hands out numbered tokens as DingTalk's token endpoint would, and counts the fetches per key."""

    def __init__(self, lifetime: float = 7200) -> None:
        self.fetches: dict[str, int] = {}
        self.lifetime = lifetime
        self.pause = 0.0

    def fetcher(self, key: str) -> TokenFetch:
        async def fetch() -> tuple[str, float]:
            self.fetches[key] = self.fetches.get(key, 0) + 1
            await asyncio.sleep(self.pause)
            return f"{key}-token-{self.fetches[key]}", self.lifetime

        return fetch


class LifetimeRecorder:
    """A token cache of the test's own that notes the lifetime each token is stored for."""

    def __init__(self) -> None:
        self.lifetimes: list[float] = []
        self._tokens: dict[str, str] = {}

    async def get(self, key: str) -> str:
        return self._tokens.get(key, "")

    async def put(self, key: str, token: str, lifetime: float) -> None:
        self.lifetimes.append(lifetime)
        self._tokens[key] = token

    async def drop(self, key: str, rejected: str) -> None:
        self._tokens.pop(key, None)

    def fetching(self, key: str) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


async def test_many_callers_at_once_fetch_one_token_per_key() -> None:
    platform, tokens = Platform(), MemoryTokens()
    platform.pause = 0.05
    first_org = CachedToken("org:corp1", tokens, platform.fetcher("org:corp1"))
    second_org = CachedToken("org:corp2", tokens, platform.fetcher("org:corp2"))

    got = await asyncio.gather(*(token.token() for token in [first_org, second_org] * 50))

    assert platform.fetches == {"org:corp1": 1, "org:corp2": 1}
    assert set(got[0::2]) == {"org:corp1-token-1"} and set(got[1::2]) == {"org:corp2-token-1"}


async def test_a_rejected_token_is_dropped_and_the_call_made_once_more_with_a_new_one() -> None:
    platform = Platform()
    credentials = CachedToken("app", MemoryTokens(), platform.fetcher("app"))
    used: list[str] = []

    async def call(token: str) -> str:
        used.append(token)
        if token == "app-token-1":
            raise REJECTED
        return "done"

    assert await credentials.authorized(call) == "done"
    assert used == ["app-token-1", "app-token-2"]
    assert await credentials.token() == "app-token-2"


async def test_a_token_rejected_twice_is_not_fetched_a_third_time() -> None:
    platform = Platform()
    credentials = CachedToken("app", MemoryTokens(), platform.fetcher("app"))

    async def call(token: str) -> str:
        raise REJECTED

    with pytest.raises(DingTalkError):
        await credentials.authorized(call)
    assert platform.fetches == {"app": 2}


async def test_other_errors_keep_the_token() -> None:
    platform = Platform()
    credentials = CachedToken("app", MemoryTokens(), platform.fetcher("app"))

    async def call(token: str) -> str:
        raise Refused(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied")

    with pytest.raises(DingTalkError, match="403"):
        await credentials.authorized(call)
    assert platform.fetches == {"app": 1}
    assert await credentials.token() == "app-token-1"


@pytest.mark.parametrize(
    ("lifetime", "reused"),
    [(7200, 7200 - TOKEN_MARGIN_SECONDS), (400, 200), (0, TOKEN_MIN_REUSE_SECONDS)],
)
async def test_a_token_is_reused_until_shortly_before_dingtalk_says_it_expires(lifetime: float, reused: float) -> None:
    cache = LifetimeRecorder()
    await CachedToken("app", cache, Platform(lifetime).fetcher("app")).token()
    assert cache.lifetimes == [reused]


async def test_an_internal_app_gives_every_message_the_app_token_for_every_kind_of_call() -> None:
    platform = Platform()
    authorizer = AppAuthorizer(MemoryTokens(), platform.fetcher("app"))
    messages = [_message("staff1", "corp1"), _message("staff2", "corp2")]

    authorizations = [await authorizer.authorize(message) for message in messages]
    seen = {await credentials.authorized(_echo) for a in authorizations for credentials in (a.organization, a.calendar)}

    assert seen == {"app-token-1"}
    assert platform.fetches == {"app": 1}


async def _echo(token: str) -> str:
    return token


def _message(staff_id: str, corp_id: str) -> Message:
    return Message(
        msg_id=f"msg-{staff_id}",
        text="help",
        msgtype="text",
        conversation_type="1",
        conversation_id="cid",
        sender_staff_id=staff_id,
        sender_union_id="",
        sender_id=f"$:{staff_id}",
        sender_corp_id=corp_id,
        chatbot_corp_id=corp_id,
        session_webhook="",
        session_webhook_expires_ms=0,
    )


# --- through the real process ------------------------------------------------------------------------------------


async def test_lookups_calendar_calls_and_robot_sends_all_use_the_token_the_platform_issued(
    sandbox: Sandbox, bot: BotProcess
) -> None:
    user = new_user(sandbox)
    new_calendar(sandbox, user)
    data = sandbox.chat("list", user.staff_id, group=True)  # a card with buttons: sent privately, by robot OpenAPI
    since = len(sandbox.requests)

    await converse(sandbox, data)
    await sandbox.wait_for(lambda: [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]])

    [lookup] = [r for r in sandbox.requests[since:] if r.api == "user/get"]
    [listing] = calendar_calls(sandbox, user.union_id)
    [private] = [r for r in sandbox.calls("batchSend") if r.json()["userIds"] == [user.staff_id]]
    used = {lookup.query["access_token"], *(r.headers["x-acs-dingtalk-access-token"] for r in (listing, private))}
    assert len(used) == 1 and used.pop().startswith("sandbox-token-")  # one token, as the sandbox issued it
    assert private.json()["robotCode"] == data["robotCode"]
