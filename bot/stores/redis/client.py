"""The one Redis client of the process (REDIS_URL) and the helpers every Redis store uses: scripts, writes no caller
waits for, and deleting keys by pattern."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import redis.asyncio as redis

from bot.stores.redis.batch import CommandBatcher

SCAN_COUNT = 1000  # keys Redis looks at per SCAN step


def connect(url: str, verify_tls: bool) -> redis.Redis:
    """A client for REDIS_URL; rediss:// without verification for providers with self-signed certificates."""
    options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "decode_responses": True}
    if url.startswith("rediss://") and not verify_tls:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
        options["ssl_check_hostname"] = False
    return redis.Redis.from_url(url, **options)


def script(batcher: CommandBatcher, source: str, keys: list[str], *args: Any) -> asyncio.Future[Any]:
    # EVAL rather than EVALSHA: Redis caches the script by its hash either way, and a restarted Redis that forgot it
    # needs no reload
    return batcher.send("EVAL", source, len(keys), *keys, *args)


def write_behind(batcher: CommandBatcher, *command: Any) -> None:
    """A write no caller waits for (giving a slot back, remembering a unionId): should it fail, the state is only less
    shared for a while, not worth a round trip before the card."""
    batcher.send(*command).add_done_callback(ignore_failure)


def ignore_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log it as never retrieved


async def unlink_matching(batcher: CommandBatcher, *patterns: str) -> int:
    """Delete every key matching the patterns (SCAN, never KEYS: Redis keeps serving meanwhile); how many."""
    deleted = 0
    for pattern in patterns:
        cursor = "0"
        while True:
            cursor, keys = await batcher.send("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            if keys:
                deleted += int(await batcher.send("UNLINK", *keys))
            if str(cursor) == "0":
                break
    return deleted


async def unlink(batcher: CommandBatcher, *keys: str) -> int:
    """Delete these keys; how many there were."""
    return int(await batcher.send("UNLINK", *keys))
