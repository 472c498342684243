"""The intake journal in a Redis Stream with a consumer group: a surviving dyno claims a dead one's entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.journal import Entry, Unwritable, dump_message, load_message
from bot.models import Message
from bot.redis_batch import CommandBatcher

log = logging.getLogger("bot.journal")

GROUP = "bot"
CLAIM_COUNT = 100  # entries taken over per XAUTOCLAIM
PROGRESS_DAYS = 7  # a progress hash outlives any handling; one left behind by an odd failure goes by itself
RESUMED = "#resumed"  # the progress field counting resumptions; step keys never start with "#"
# Written down and taken by this dyno in one step: no other dyno reads it while its receiver lives. The msgId claim
# drops a repeat on any dyno for the dedupe window.
_ADD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
return id
"""
_FAILED = (RedisError, OSError, TimeoutError)


class RedisJournal:
    """Entries live in `<prefix>journal` (a Stream), their progress in a hash each. A live dyno keeps touching its
    own entries (XCLAIM to itself), so only a dead dyno's entries stay idle past `claim_seconds` and are taken over
    with XAUTOCLAIM by another dyno."""

    def __init__(
        self, client: redis.Redis, prefix: str, consumer: str, remember_seconds: float, claim_seconds: float
    ) -> None:
        self._redis = CommandBatcher(client)
        self._stream = f"{prefix}journal"
        self._prefix = prefix
        self._consumer = consumer
        self._remember_seconds = max(1, round(remember_seconds))
        self._claim_seconds = claim_seconds
        self._ids: dict[str, str] = {}  # msgId -> stream id, for the entries this process handles
        self._tasks: list[asyncio.Task[None]] = []
        self._health = Unwritable()

    async def open(self) -> list[Entry]:
        """This consumer's own unfinished entries (a restart of the same dyno resumes them at once)."""
        try:
            with contextlib.suppress(RedisError):  # BUSYGROUP: it exists
                await self._redis.send("XGROUP", "CREATE", self._stream, GROUP, "0", "MKSTREAM")
            answer = await self._redis.send("XREADGROUP", "GROUP", GROUP, self._consumer, "STREAMS", self._stream, "0")
            pending = answer[0][1] if answer else []
            return await self._entries(pending)
        except _FAILED as error:
            self._health.failed(error)
            return []

    async def add(self, message: Message) -> bool:
        keys = (f"{self._prefix}jmsg:{message.key}", self._stream)
        arguments = (self._remember_seconds, dump_message(message), GROUP, self._consumer)
        try:
            stream_id = await self._redis.send("EVAL", _ADD, 2, *keys, *arguments)
        except _FAILED as error:
            self._health.failed(error)
            return True  # served without durability; this process still drops its own repeats
        self._health.succeeded()
        if stream_id is None:
            return False
        self._ids[message.key] = str(stream_id)
        return True

    async def record(self, msg_id: str, key: str, value: Any) -> None:
        stream_id = self._ids.get(msg_id)
        if stream_id is not None:
            await self._guarded(self._redis.send("HSET", self._progress(stream_id), key, orjson.dumps(value)))

    async def finish(self, msg_id: str) -> None:
        stream_id = self._ids.pop(msg_id, None)
        if stream_id is None:
            return
        await asyncio.gather(
            self._guarded(self._redis.send("XACK", self._stream, GROUP, stream_id)),
            self._guarded(self._redis.send("XDEL", self._stream, stream_id)),
            self._guarded(self._redis.send("DEL", self._progress(stream_id))),
        )

    def resume_elsewhere(self, resume: Callable[[list[Entry]], None]) -> None:
        self._tasks = [asyncio.create_task(self._keep_alive()), asyncio.create_task(self._claim(resume))]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def _progress(self, stream_id: str) -> str:
        return f"{self._prefix}jprogress:{stream_id}"

    async def _guarded(self, command: asyncio.Future[Any]) -> None:
        try:
            await command
        except _FAILED as error:
            self._health.failed(error)

    async def _entries(self, raw: list[tuple[str, dict[str, str] | None]]) -> list[Entry]:
        """Entries as XREADGROUP and XAUTOCLAIM give them (id, fields), each counted as resumed once more; those
        deleted since (no fields) or unreadable are acknowledged and skipped, those at work here already too."""
        found: list[tuple[str, Message]] = []
        for stream_id, values in raw:
            try:
                message = load_message((values or {})["m"])
            except (KeyError, ValueError, TypeError):
                self._redis.send("XACK", self._stream, GROUP, stream_id).add_done_callback(_ignore_failure)
                continue
            if message.key not in self._ids:  # else claimed back from itself: not resumed twice
                self._ids[message.key] = stream_id
                found.append((stream_id, message))
        # one round trip for all of them: the batcher pipelines what is sent together
        answers = await asyncio.gather(*(self._resumed_progress(stream_id) for stream_id, _ in found))
        return [Entry(message, resumed, steps) for (_, message), (resumed, steps) in zip(found, answers, strict=True)]

    async def _resumed_progress(self, stream_id: str) -> tuple[int, dict[str, Any]]:
        key = self._progress(stream_id)
        steps, resumed, _ = await asyncio.gather(
            self._redis.send("HGETALL", key),
            self._redis.send("HINCRBY", key, RESUMED, 1),
            self._redis.send("EXPIRE", key, PROGRESS_DAYS * 86_400),
        )
        return int(resumed), {name: orjson.loads(value) for name, value in steps.items() if not name.startswith("#")}

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._claim_seconds / 4)
            ids = list(self._ids.values())
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                command = ("XCLAIM", self._stream, GROUP, self._consumer, 0, *chunk, "JUSTID")
                await self._guarded(self._redis.send(*command))

    async def _claim(self, resume: Callable[[list[Entry]], None]) -> None:
        idle_ms = max(1, round(self._claim_seconds * 1000))
        while True:
            # jittered: dynos started together do not all look at once
            await asyncio.sleep(random.uniform(0.25, 0.75) * self._claim_seconds)  # noqa: S311 - not cryptography
            cursor = "0-0"
            while True:
                try:
                    answer = await self._redis.send(
                        "XAUTOCLAIM", self._stream, GROUP, self._consumer, idle_ms, cursor, "COUNT", CLAIM_COUNT
                    )
                    entries = await self._entries(answer[1])
                except _FAILED as error:
                    self._health.failed(error)
                    break
                except Exception:  # this loop must outlive anything odd in Redis's answers
                    log.exception("taking over unfinished commands failed")
                    break
                if entries:
                    fields = {"count": len(entries)}
                    log.warning("took over unfinished commands another dyno left", extra={"fields": fields})
                    resume(entries)
                cursor = str(answer[0])
                if cursor == "0-0":
                    break


def _ignore_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
