"""Audit records in Redis: one sorted set per calendar (by time), and per name the calendar ids it was seen with."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict

import orjson

from bot.stores.audit import (
    KEEP_SECONDS,
    MAX_PER_SUBJECT,
    MAX_REFUSALS,
    MAX_REFUSED_SUBJECT,
    REFUSED,
    AuditRecord,
    Refusal,
    name_key,
)
from bot.stores.keys import KeyBuilder
from bot.stores.redis.batch import CommandBatcher

# One refusal: the sender's row (by time in KEYS[1], its subject and count in KEYS[2]), the oldest beyond the cap gone.
_REFUSE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
local count = 1
if old then count = cjson.decode(old)['count'] + 1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({at = tonumber(ARGV[2]), subject = ARGV[3], count = count}))
local gone = redis.call('ZRANGE', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
if #gone > 0 then
    redis.call('ZREM', KEYS[1], unpack(gone))
    redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
"""
_SEPARATOR = "\x1f"  # between staff id and action in a refusal's member (neither can contain it)


class RedisAudit:
    """In Redis (REDIS_URL): one sorted set per calendar (by time), and per name the calendar ids it was seen with;
    an ISV app's sets are per organization, so that one organization's changes never crowd out another's."""

    def __init__(self, redis: CommandBatcher, keys: KeyBuilder, per_organization: bool = False) -> None:
        self._redis = redis
        self._prefix = keys.concern("audit")
        self._per_organization = per_organization

    def _scope(self, corp_id: str | None) -> str:
        return f"{self._prefix}org:{corp_id}:" if self._per_organization and corp_id is not None else self._prefix

    async def record(self, entry: AuditRecord) -> None:
        scope = self._scope(entry.corp_id)
        key = f"{scope}calendar:{entry.calendar_id}"
        member = orjson.dumps({**asdict(entry), "unique": uuid.uuid4().hex})
        writes = [
            self._redis.send("ZADD", key, entry.at, member),
            self._redis.send("ZREMRANGEBYSCORE", key, "-inf", time.time() - KEEP_SECONDS),
            self._redis.send("ZREMRANGEBYRANK", key, 0, -MAX_PER_SUBJECT - 1),
            self._redis.send("EXPIRE", key, KEEP_SECONDS),
        ]
        if name_key(entry.name):
            names = f"{scope}name:{name_key(entry.name)}"
            writes += [
                self._redis.send("SADD", names, entry.calendar_id),
                self._redis.send("EXPIRE", names, KEEP_SECONDS),
            ]
        await asyncio.gather(*writes)

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        scope = self._scope(corp_id)
        named = await self._redis.send("SMEMBERS", f"{scope}name:{name_key(calendar)}") if calendar else set()
        since = time.time() - KEEP_SECONDS
        found = await asyncio.gather(
            *(
                # earlier versions kept refusals here too: read enough to fill `limit` with changes regardless
                self._redis.send(
                    "ZRANGE", f"{scope}calendar:{calendar_id}", "+inf", since, "BYSCORE", "REV", "LIMIT", 0, limit * 4
                )
                for calendar_id in {calendar, *named}
            )
        )
        records = []
        for members in found:
            for member in members:
                fields = orjson.loads(member)
                fields.pop("unique", None)
                record = AuditRecord(**fields)
                if record.result != REFUSED and (corp_id is None or record.corp_id == corp_id):
                    records.append(record)
        records.sort(key=lambda record: record.at)
        return records[-limit:]

    async def refuse(self, refusal: Refusal) -> None:
        keys = [f"{self._prefix}refusals:{refusal.corp_id}", f"{self._prefix}refused:{refusal.corp_id}"]
        member = f"{refusal.staff_id}{_SEPARATOR}{refusal.action}"
        subject = refusal.subject[:MAX_REFUSED_SUBJECT]
        await self._redis.send("EVAL", _REFUSE, 2, *keys, member, refusal.at, subject, MAX_REFUSALS, KEEP_SECONDS)

    async def refusals(self, corp_id: str) -> list[Refusal]:
        since = time.time() - KEEP_SECONDS
        members = await self._redis.send("ZRANGE", f"{self._prefix}refusals:{corp_id}", since, "+inf", "BYSCORE")
        if not members:
            return []
        details = await self._redis.send("HMGET", f"{self._prefix}refused:{corp_id}", *members)
        refusals = []
        for member, detail in zip(members, details, strict=True):
            if detail is None:
                continue
            staff_id, _, action = member.partition(_SEPARATOR)
            fields = orjson.loads(detail)
            at, subject, count = float(fields["at"]), str(fields["subject"]), int(fields["count"])
            refusals.append(Refusal(at, action, staff_id, corp_id, subject, count))
        return refusals[-MAX_REFUSALS:]

    async def forget_organization(self, corp_id: str) -> int:
        return 0  # kept for KEEP_SECONDS, see AuditStore
