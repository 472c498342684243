"""Audit records: every calendar change made through the bot and every refused admin command, kept 90 days."""

from __future__ import annotations

import asyncio
import functools
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
PRUNE_SECONDS = 3_600.0  # how often the embedded store deletes records past the 90 days (reads never show them)
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
    """In the embedded database (BOT_STATE_DIR). Records that arrive while a write is under way are written together
    in the next transaction: under load, one commit for many changes."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._pruned_at = 0.0

    async def create(self) -> None:
        """Create the table and its indexes unless they exist."""

        def create(connection: sqlite3.Connection) -> None:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS audit (at REAL, action TEXT, staff_id TEXT, corp_id TEXT, union_id TEXT,"
                " calendar_id TEXT, name TEXT, result TEXT, code TEXT, request_id TEXT, msg_id TEXT, name_key TEXT)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_calendar ON audit (calendar_id, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_name ON audit (name_key, at)")
            connection.execute("CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)")

        await self._database.transaction(create)

    async def record(self, entry: AuditRecord) -> None:
        written = asyncio.get_running_loop().create_future()
        self._pending.append((entry, written))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        await written

    async def _write_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._database.transaction(functools.partial(self._insert, batch))
                except Exception as error:
                    for _, written in batch:
                        if not written.done():
                            written.set_exception(error)
                else:
                    for _, written in batch:
                        if not written.done():
                            written.set_result(None)
        finally:
            self._writer = None

    def _insert(self, batch: list[tuple[AuditRecord, asyncio.Future[None]]], connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned_at > PRUNE_SECONDS:
            connection.execute("DELETE FROM audit WHERE at < ?", (now - KEEP_SECONDS,))
            self._pruned_at = now
        rows = [(*asdict(entry).values(), name_key(entry.name)) for entry, _ in batch]
        connection.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

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
