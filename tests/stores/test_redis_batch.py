"""The Redis command batcher against a real redis-server: answers reach their callers, batches share round trips."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bot.stores.redis.batch import CommandBatcher
from tests.helpers import reads_by_server
from tests.redisserver import RedisServer


async def test_each_caller_gets_its_own_answer(redis_server: RedisServer) -> None:
    batcher = CommandBatcher(redis_server.client())
    await asyncio.gather(*(batcher.send("SET", f"key{n}", f"value{n}") for n in range(200)))
    values = await asyncio.gather(*(batcher.send("GET", f"key{n}") for n in range(200)))
    await batcher.aclose()
    assert values == [f"value{n}" for n in range(200)]


async def test_commands_issued_together_share_one_round_trip(redis_server: RedisServer) -> None:
    batcher, observer = CommandBatcher(redis_server.client()), redis_server.client()
    await asyncio.gather(batcher.send("PING"), observer.ping())  # both connections open before counting
    before = await reads_by_server(observer)
    answers = await asyncio.gather(*(batcher.send("INCR", "counter") for _ in range(500)))
    reads = await reads_by_server(observer) - before
    await batcher.aclose()
    await observer.aclose()
    assert answers == list(range(1, 501))
    assert reads <= 3  # the batch (Redis reads at most 16 KB at a time) and the second INFO; unbatched: 501


async def test_one_failing_command_fails_only_its_caller(redis_server: RedisServer) -> None:
    batcher = CommandBatcher(redis_server.client())
    await batcher.send("SET", "text", "not a number")
    good, bad = batcher.send("INCR", "number"), batcher.send("INCR", "text")
    assert await good == 1
    with pytest.raises(ResponseError):
        await bad
    await batcher.aclose()


async def test_a_lost_server_fails_every_waiting_command(redis_server: RedisServer) -> None:
    batcher = CommandBatcher(redis_server.client())
    await batcher.send("PING")
    redis_server.stop()
    results = await asyncio.gather(*(batcher.send("GET", "key") for _ in range(3)), return_exceptions=True)
    await batcher.aclose()
    assert all(isinstance(result, (RedisConnectionError, OSError)) for result in results), results
