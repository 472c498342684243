"""The per-API limit kept in a real Redis: shared by two dynos' states, reserved for many waiting calls at once."""

from __future__ import annotations

import asyncio
import time

from bot.stores.keys import KeyBuilder
from bot.stores.redis.admission import RedisAdmission
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.limiter import RedisLimiter
from tests.helpers import reads_by_server
from tests.redisserver import RedisServer


def dyno_state(redis_server: RedisServer, api_qps: float) -> tuple[RedisLimiter, CommandBatcher]:
    """One dyno's limiter, on a connection of its own."""
    batcher = CommandBatcher(connect(redis_server.url, verify_tls=False))
    return RedisLimiter(batcher, KeyBuilder("limits"), api_qps), batcher


async def test_calls_waiting_together_are_reserved_together(redis_server: RedisServer) -> None:
    (state, batcher), observer = dyno_state(redis_server, api_qps=1000), redis_server.client()
    async with state.slot("calendar/unsubscribe"):  # connections open before counting
        await observer.ping()
    before = await reads_by_server(observer)

    async def one_call() -> None:
        async with state.slot("calendar/unsubscribe"):
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one_call() for _ in range(200)))
    reads = await reads_by_server(observer) - before
    state.close()
    await batcher.aclose()
    await observer.aclose()
    assert reads <= 10  # one reservation, the slots given back in a batch or a few; one at a time: 400


async def test_two_dynos_together_stay_under_the_limit(redis_server: RedisServer) -> None:
    dynos = [dyno_state(redis_server, api_qps=5), dyno_state(redis_server, api_qps=5)]
    entered: list[float] = []

    async def one_call(state: RedisLimiter) -> None:
        async with state.slot("user/get"):
            entered.append(time.monotonic())

    await asyncio.gather(*(one_call(dynos[n % 2][0]) for n in range(12)))
    for state, batcher in dynos:
        state.close()
        await batcher.aclose()
    entered.sort()
    # a call holds its slot until a second after it ended: the 6th and 11th calls wait for the 1st and 6th
    assert entered[5] - entered[0] >= 0.95
    assert entered[10] - entered[5] >= 0.95
    assert entered[4] - entered[0] < 0.5  # the first five did not wait


async def test_redis_admission_uses_the_configured_windows(redis_server: RedisServer) -> None:
    batcher = CommandBatcher(connect(redis_server.url, verify_tls=False))
    state = RedisAdmission(batcher, KeyBuilder("windows"), 1, user_window=0.3)
    verdicts = [await state.admit(f"m{n}", "sender") for n in range(3)]
    await asyncio.sleep(0.35)
    after_the_window = await state.admit("m3", "sender")
    await batcher.aclose()

    assert verdicts == ["allow", "slow_down", "drop"]
    assert after_the_window == "allow"
