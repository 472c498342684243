"""Client CPU per Redis operation of the bot's shared state, alone and with many in flight (the README's figures).
Usage: python bench/redis_ops.py [REDIS_URL]; without a URL it starts its own redis-server on a free port."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.redisserver import RedisServer
from bot.stores.keys import KeyBuilder
from bot.stores.redis.admission import RedisAdmission
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import connect
from bot.stores.redis.limiter import RedisLimiter

OPERATIONS = 20_000


async def cpu_per_operation(operation: Callable[[int], Awaitable[object]], in_flight: int) -> float:
    """Microseconds of this process's CPU per operation, with `in_flight` callers looping at once."""

    async def caller(number: int) -> None:
        for _ in range(OPERATIONS // in_flight):
            await operation(number)

    started = time.process_time()
    await asyncio.gather(*(caller(number) for number in range(in_flight)))
    return (time.process_time() - started) / OPERATIONS * 1e6


async def main(url: str) -> None:
    shared = CommandBatcher(connect(url, verify_tls=False))
    limiter = RedisLimiter(shared, KeyBuilder("bench"), api_qps=1e9)
    admission = RedisAdmission(shared, KeyBuilder("bench"), user_rate=10**9)
    batcher = CommandBatcher(connect(url, verify_tls=False))

    async def set_key(number: int) -> None:
        await batcher.send("SET", f"bench:key:{number}", "value")

    async def api_slot(number: int) -> None:
        async with limiter.slot("bench"):
            pass

    async def admit(number: int) -> None:
        await admission.admit(f"{time.monotonic_ns()}:{number}", f"sender{number}")

    for name, operation in (("SET", set_key), ("api slot", api_slot), ("admit", admit)):
        await operation(0)  # connections open before measuring
        figures = [f"{await cpu_per_operation(operation, n):6.1f} µs with {n} in flight" for n in (1, 16, 128)]
        print(f"{name:9} " + " | ".join(figures))
    await batcher.aclose()
    limiter.close()
    await shared.aclose()


async def with_own_server() -> None:
    server = await RedisServer().start()
    try:
        await main(server.url)
    finally:
        server.stop()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1]) if len(sys.argv) > 1 else with_own_server())
