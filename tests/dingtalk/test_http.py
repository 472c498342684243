"""The HTTP transport: per-call timeouts kept in a bounded cache."""

from __future__ import annotations

import httpx

from bot.dingtalk.http import AiohttpTransport, _client_timeout
from tests.helpers import started_sandbox


async def test_http_timeouts_are_cached_in_a_bounded_cache() -> None:
    transport = AiohttpTransport(4)
    async with started_sandbox() as sandbox:
        for number in range(100):  # as calls near the end of their budgets have: each its own limit
            seconds = 5 - number / 1000
            limits = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
            request = httpx.Request("POST", f"{sandbox.base_url}/robot/sendBySession", extensions={"timeout": limits})
            assert (await transport.handle_async_request(request)).status_code == 200
        await transport.aclose()

    assert _client_timeout.cache_info().currsize <= 64
