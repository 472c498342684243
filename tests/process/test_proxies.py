"""The outbound proxy as a process meets it: HTTP_PROXY, HTTPS_PROXY and NO_PROXY in its environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.sandbox.platform import Sandbox
from tests.forwardproxy import ForwardProxy
from tests.helpers import card, converse, new_calendar, new_user, running_process, started_sandbox

ENV = {"LOG_LEVEL": "DEBUG", "BOT_STREAM_RETRY_SECONDS": "0.05"}


@pytest_asyncio.fixture
async def own_sandbox() -> AsyncIterator[Sandbox]:
    async with started_sandbox() as platform:
        yield platform


async def help_card(sandbox: Sandbox) -> str:
    user = new_user(sandbox)
    _, reply = await converse(sandbox, sandbox.chat("help", user.staff_id))
    title: str = card(reply)["title"]
    return title


# --- outbound proxy -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_every_call_and_the_websocket_go_through_the_configured_proxy(
    own_sandbox: Sandbox, variable: str
) -> None:
    sandbox = own_sandbox
    proxy = await ForwardProxy().start()
    try:
        async with running_process(sandbox, {**ENV, variable: proxy.url}):
            assert await help_card(sandbox) == "📅 Calendar bot"
            user = new_user(sandbox)
            calendar_id = new_calendar(sandbox, user)
            _, reply = await converse(sandbox, sandbox.chat(f"unsubscribe {calendar_id}", user.staff_id))
            assert card(reply)["title"] == "✅ Unsubscribed"
    finally:
        await proxy.close()

    base = sandbox.base_url
    passed = set(proxy.passed)
    assert ("POST", f"{base}/v1.0/gateway/connections/open") in passed
    assert ("CONNECT", base.removeprefix("http://")) in passed  # the WebSocket, tunnelled
    assert ("POST", f"{base}/v1.0/oauth2/accessToken") in passed
    assert ("POST", f"{base}/v1.0/calendar/users/{user.union_id}/calendars/{calendar_id}/unsubscribe") in passed
    assert any(method == "POST" and "/topapi/v2/user/get?" in target for method, target in passed)
    assert [r for r in sandbox.requests if r.api in ("webhook", "batchSend")]
    assert all(("POST", base + r.raw_path) in passed for r in sandbox.requests if r.api == "webhook")


@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_PROXY": "{proxy}", "HTTPS_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"},
        {"http_proxy": "{proxy}", "no_proxy": "localhost,127.0.0.1"},
    ],
    ids=["upper-case", "lower-case"],
)
async def test_no_proxy_covering_the_host_keeps_everything_direct(own_sandbox: Sandbox, env: dict[str, str]) -> None:
    sandbox = own_sandbox
    proxy = await ForwardProxy().start()
    try:
        settings = {key: value.format(proxy=proxy.url) for key, value in env.items()}
        async with running_process(sandbox, {**ENV, **settings}):
            assert await help_card(sandbox) == "📅 Calendar bot"
    finally:
        await proxy.close()

    assert proxy.passed == []
    assert sandbox.calls("gateway") and sandbox.calls("webhook")


async def test_a_proxy_the_developer_has_set_never_sees_sandbox_traffic(
    own_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = own_sandbox
    proxy = await ForwardProxy().start()
    for variable in ("HTTP_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(variable, proxy.url)
    try:
        async with running_process(sandbox, ENV):
            assert await help_card(sandbox) == "📅 Calendar bot"
    finally:
        await proxy.close()

    assert proxy.passed == []
