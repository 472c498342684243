"""The intake journal in a Redis Stream with a consumer group: a surviving dyno claims a dead one's entries."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from bot.models import Message
from bot.stores.journal import CARD, Entry, Unwritable, dump_message, load_message
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher
from bot.stores.redis.client import ignore_failure

log = logging.getLogger("bot.journal")

GROUP = "bot"
CLAIM_COUNT = 100  # entries taken over per XAUTOCLAIM
PROGRESS_DAYS = 7  # a progress hash outlives any handling; one left behind by an odd failure goes by itself
RESUMED = "#resumed"  # the progress field counting resumptions; step keys never start with "#"
RETRY_SECONDS = 0.5  # how often writes that failed (progress, finish) are tried again while Redis is away
# Written down and taken by this dyno in one step: no other dyno reads it while its receiver lives. The msgId claim
# drops a repeat on any dyno for the dedupe window.
_ADD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
return id
"""
# The card step, only while this consumer still holds the entry; its claim renewed (idle reset) in the same step.
_MARK_CARD = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""
# At start: consumers with nothing pending and idle past the claim time are gone (a process's name is its own, so one
# is left behind at every restart; a live one is made again by its next read); what the others hold is counted.
_CONSUMERS = """
local held = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] ~= ARGV[2] then
    if fields['pending'] > 0 then
      held = held + fields['pending']
    elseif fields['idle'] > tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    end
  end
end
return held
"""
_FAILED = (RedisError, OSError, TimeoutError)


class RedisJournal:
    """Entries live in `<prefix>journal` (a Stream), their progress in a hash each. A live dyno keeps touching its
    own entries (XCLAIM to itself), so only a dead dyno's entries stay idle past `claim_seconds` and are taken over
    with XAUTOCLAIM by another dyno."""

    def __init__(
        self, redis: CommandBatcher, keys: KeyBuilder, consumer: str, remember_seconds: float, claim_seconds: float
    ) -> None:
        self._redis = redis  # the process's one client: closed with the stores, not here
        self._stream = keys.single("journal")
        self._keys = keys
        self._consumer = consumer
        self._remember_seconds = max(1, round(remember_seconds))
        self._claim_seconds = claim_seconds
        self._ids: dict[str, str] = {}  # msgId -> stream id, for the entries this process handles (kept alive)
        self._tasks: list[asyncio.Task[None]] = []
        self._health = Unwritable()
        # Writes that failed, kept until Redis has them: a finished entry whose XACK never lands would be taken over
        # and run again by another dyno, a card step never written would let a resumption send a second card.
        self._unwritten: dict[str, dict[str, bytes]] = {}  # stream id -> progress fields, in the order recorded
        self._unfinished: set[str] = set()  # msgIds answered here whose XACK has not landed yet (still kept alive)
        self._retrying: asyncio.Task[None] | None = None

    async def open(self) -> list[Entry]:
        """Entries pending under this very consumer name: none for the bot, whose every process has a name of its
        own (another process's entries are taken over only once idle, see resume_elsewhere); a journal reopened
        under a name it owns resumes them."""
        try:
            with contextlib.suppress(RedisError):  # BUSYGROUP: it exists
                await self._redis.send("XGROUP", "CREATE", self._stream, GROUP, "0", "MKSTREAM")
            idle_ms = max(1, round(self._claim_seconds * 1000))
            held = await self._redis.send("EVAL", _CONSUMERS, 1, self._stream, GROUP, self._consumer, idle_ms)
            if held:
                fields = {"count": held, "claim_seconds": self._claim_seconds}
                log.info(
                    "unfinished commands of other processes: taken over if they stay idle", extra={"fields": fields}
                )
            answer = await self._redis.send("XREADGROUP", "GROUP", GROUP, self._consumer, "STREAMS", self._stream, "0")
            pending = answer[0][1] if answer else []
            return await self._entries(pending)
        except _FAILED as error:
            self._health.failed(error)
            return []

    async def add(self, message: Message) -> bool:
        keys = (self._keys("jmsg", message.key), self._stream)
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
        if stream_id is None:
            return  # not journaled (accepted while Redis was away): nothing to resume it from
        raw = orjson.dumps(value)
        unwritten = self._unwritten.get(stream_id)
        if unwritten is None:  # else behind the steps still waiting: written after them, in order
            try:
                await self._redis.send("HSET", self._progress(stream_id), key, raw)
                return
            except _FAILED as error:
                self._health.failed(error)
                unwritten = self._unwritten.setdefault(stream_id, {})
        unwritten.pop(key, None)
        unwritten[key] = raw
        self._retry_soon()

    async def mark_card(self, msg_id: str, seconds: float) -> bool:
        """The card step, written only while this dyno still holds the entry (and its claim renewed in the same
        step): a dyno that took the entry over while Redis was away answers it instead, never both."""
        return await self.record_held(msg_id, CARD, True, seconds)

    async def record_held(self, msg_id: str, key: str, value: Any, seconds: float) -> bool:
        stream_id = self._ids.get(msg_id)
        if stream_id is None:
            return True  # not journaled: nobody else can resume it
        keys = (self._stream, self._progress(stream_id))
        arguments = (GROUP, stream_id, self._consumer, key, orjson.dumps(value))
        deadline = time.monotonic() + seconds
        while True:
            try:
                held = await self._redis.send("EVAL", _MARK_CARD, 2, *keys, *arguments)
                break
            except _FAILED as error:
                self._health.failed(error)
                if time.monotonic() + RETRY_SECONDS > deadline:
                    if key != CARD:  # kept: once Redis is back, a resumption knows the change may have begun
                        self._unwritten.setdefault(stream_id, {})[key] = arguments[-1]
                        self._retry_soon()
                    return False
                await asyncio.sleep(RETRY_SECONDS)
        if not held:
            log.warning("message taken over by another dyno: it answers it", extra={"fields": {"msg_id": msg_id}})
            self._ids.pop(msg_id, None)
            self._unwritten.pop(stream_id, None)
        return bool(held)

    async def finish(self, msg_id: str) -> None:
        stream_id = self._ids.get(msg_id)
        if stream_id is None:
            return
        self._unwritten.pop(stream_id, None)  # the entry's progress goes with it
        if await self._crossed_out(stream_id):
            self._ids.pop(msg_id, None)
        else:  # kept alive (and so never taken over) until the XACK lands
            self._unfinished.add(msg_id)
            self._retry_soon()

    def release(self, msg_id: str) -> None:
        """No longer kept alive here: once idle for the claim time, a dyno (this one too) takes it over."""
        self._ids.pop(msg_id, None)

    def resume_elsewhere(self, resume: Callable[[list[Entry]], None]) -> None:
        self._tasks = [asyncio.create_task(self._keep_alive()), asyncio.create_task(self._claim(resume))]

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._retrying] if self._retrying else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _crossed_out(self, stream_id: str) -> bool:
        answers = await asyncio.gather(
            self._redis.send("XACK", self._stream, GROUP, stream_id),
            self._redis.send("XDEL", self._stream, stream_id),
            self._redis.send("DEL", self._progress(stream_id)),
            return_exceptions=True,
        )
        failed = next((answer for answer in answers if isinstance(answer, BaseException)), None)
        if failed is None:
            return True
        if not isinstance(failed, _FAILED):
            raise failed
        self._health.failed(failed)
        return False

    def _retry_soon(self) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry())

    async def _retry(self) -> None:
        """Write what failed, oldest first, every RETRY_SECONDS until Redis has all of it."""
        while self._unwritten or self._unfinished:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                for stream_id, fields in list(self._unwritten.items()):
                    written, progress = dict(fields), self._progress(stream_id)
                    answers = await asyncio.gather(  # a lifetime: one written after its entry finished goes by itself
                        self._redis.send("HSET", progress, *itertools.chain(*written.items())),
                        self._redis.send("EXPIRE", progress, PROGRESS_DAYS * 86_400),
                        return_exceptions=True,
                    )
                    for answer in answers:
                        if isinstance(answer, BaseException):
                            raise answer
                    for key, value in written.items():  # a step recorded again meanwhile stays to be written
                        if fields.get(key) is value:
                            del fields[key]
                    if not fields and self._unwritten.get(stream_id) is fields:
                        del self._unwritten[stream_id]
            except _FAILED as error:
                self._health.failed(error)
                continue
            for msg_id in list(self._unfinished):
                entry = self._ids.get(msg_id)
                if entry is not None and not await self._crossed_out(entry):
                    break
                self._unfinished.discard(msg_id)
                self._ids.pop(msg_id, None)
        self._health.succeeded()

    def _progress(self, stream_id: str) -> str:
        return self._keys("jprogress", stream_id)

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
                self._redis.send("XACK", self._stream, GROUP, stream_id).add_done_callback(ignore_failure)
                continue
            if message.key not in self._ids:  # else claimed back from itself: not resumed twice
                self._ids[message.key] = stream_id
                found.append((stream_id, message))
        # one round trip for all of them: the batcher pipelines what is sent together
        answers = await asyncio.gather(*(self._resumed_progress(stream_id) for stream_id, _ in found))
        entries = []
        for (stream_id, message), (resumed, steps) in zip(found, answers, strict=True):
            try:
                done = {name: orjson.loads(value) for name, value in steps.items() if not name.startswith("#")}
            except ValueError:  # without its steps, a resumed handling could repeat a change
                log.error("journal entry unreadable, dropped", extra={"fields": {"msg_id": message.msg_id}})
                self._ids.pop(message.key, None)
                self._redis.send("XACK", self._stream, GROUP, stream_id).add_done_callback(ignore_failure)
                continue
            entries.append(Entry(message, resumed, done))
        return entries

    async def _resumed_progress(self, stream_id: str) -> tuple[int, dict[str, Any]]:
        key = self._progress(stream_id)
        steps, resumed, _ = await asyncio.gather(
            self._redis.send("HGETALL", key),
            self._redis.send("HINCRBY", key, RESUMED, 1),
            self._redis.send("EXPIRE", key, PROGRESS_DAYS * 86_400),
        )
        return int(resumed), steps

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
