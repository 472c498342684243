"""Audit records: every calendar change made through the bot and every refused admin command, kept 90 days."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Protocol

import orjson

from bot.redis_batch import CommandBatcher
from bot.stores.sqlite import Database

KEEP_SECONDS = 90 * 86_400
MAX_PER_SUBJECT = 1_000  # newest records kept per calendar in Redis; older ones are dropped with the 90 days
MAX_SUBJECT_LENGTH = 256  # a refused `audit <text>` keeps at most this much of the text


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited act: who (staff id, organization), when (epoch seconds), on what, with which result."""

    at: float
    action: str  # "unsubscribe", "resubscribe", "stats", "audit"
    staff_id: str
    corp_id: str
    union_id: str
    calendar_id: str  # for a refused `audit`, the text asked about
    name: str
    result: str  # the outcome, "admins_only" for a refusal
    code: str
    request_id: str
    msg_id: str


def name_key(name: str) -> str:
    return name.strip().casefold()


class AuditStore(Protocol):
    async def record(self, entry: AuditRecord) -> None: ...

    async def latest(self, calendar: str, limit: int) -> list[AuditRecord]:
        """The newest `limit` records of the calendar with this id or name (ignoring case), oldest first."""
        ...


class SqliteAudit:
    """In the embedded database (BOT_STATE_DIR)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def open(self) -> SqliteAudit:
        def create(connection: sqlite3.Connection) -> None:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS audit (at REAL, action TEXT, staff_id TEXT, corp_id TEXT, union_id TEXT,"
                " calendar_id TEXT, name TEXT, result TEXT, code TEXT, request_id TEXT, msg_id TEXT, name_key TEXT)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_calendar ON audit (calendar_id, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_name ON audit (name_key, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)")

        await self._database.transaction(create)
        return self

    async def record(self, entry: AuditRecord) -> None:
        def insert(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM audit WHERE at < ?", (time.time() - KEEP_SECONDS,))
            values = (*asdict(entry).values(), name_key(entry.name))
            connection.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

        await self._database.transaction(insert)

    async def latest(self, calendar: str, limit: int) -> list[AuditRecord]:
        rows = await self._database.execute(
            "SELECT at, action, staff_id, corp_id, union_id, calendar_id, name, result, code, request_id, msg_id"
            " FROM audit WHERE (calendar_id = ? OR (name_key = ? AND name_key != '')) AND at >= ?"
            " ORDER BY at DESC, rowid DESC LIMIT ?",
            (calendar, name_key(calendar), time.time() - KEEP_SECONDS, limit),
        )
        return [AuditRecord(*row) for row in reversed(rows)]


class RedisAudit:
    """In Redis (REDIS_URL): one sorted set per calendar (by time), and per name the calendar ids it was seen with."""

    def __init__(self, redis: CommandBatcher, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"calbot:{namespace}:audit:"

    async def record(self, entry: AuditRecord) -> None:
        key = f"{self._prefix}calendar:{entry.calendar_id}"
        member = orjson.dumps({**asdict(entry), "unique": uuid.uuid4().hex})
        writes = [
            self._redis.send("ZADD", key, entry.at, member),
            self._redis.send("ZREMRANGEBYSCORE", key, "-inf", time.time() - KEEP_SECONDS),
            self._redis.send("ZREMRANGEBYRANK", key, 0, -MAX_PER_SUBJECT - 1),
            self._redis.send("EXPIRE", key, KEEP_SECONDS),
        ]
        if name_key(entry.name):
            names = f"{self._prefix}name:{name_key(entry.name)}"
            writes += [
                self._redis.send("SADD", names, entry.calendar_id),
                self._redis.send("EXPIRE", names, KEEP_SECONDS),
            ]
        await asyncio.gather(*writes)

    async def latest(self, calendar: str, limit: int) -> list[AuditRecord]:
        named = await self._redis.send("SMEMBERS", f"{self._prefix}name:{name_key(calendar)}") if calendar else set()
        since = time.time() - KEEP_SECONDS
        found = await asyncio.gather(
            *(
                self._redis.send(
                    "ZRANGE",
                    f"{self._prefix}calendar:{calendar_id}",
                    "+inf",
                    since,
                    "BYSCORE",
                    "REV",
                    "LIMIT",
                    0,
                    limit,
                )
                for calendar_id in {calendar, *named}
            )
        )
        records = []
        for members in found:
            for member in members:
                fields = orjson.loads(member)
                fields.pop("unique", None)
                records.append(AuditRecord(**fields))
        records.sort(key=lambda record: record.at)
        return records[-limit:]
