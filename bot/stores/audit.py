"""Audit records: every calendar change made through the bot, kept 90 days; and, apart from them, the refused admin
commands, one row per sender and command (counted), a few per organization."""

from __future__ import annotations

import asyncio
import functools
import operator
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import orjson

from bot.stores.redis.batch import CommandBatcher
from bot.stores.sqlite.database import Database

KEEP_SECONDS = 90 * 86_400
MAX_PER_SUBJECT = 1_000  # newest records kept per calendar in Redis; older ones are dropped with the 90 days
PRUNE_SECONDS = 3_600.0  # how often the embedded store deletes records past the 90 days (reads never show them)
MAX_SUBJECT_LENGTH = 256  # an `audit <text>` looks up at most this much of the text
MAX_REFUSED_SUBJECT = 64  # a refused `audit <text>` keeps at most this much of the text
MAX_REFUSALS = 20  # senders (with their command) kept per organization; the oldest go first
REFUSED = "admins_only"  # the result of refusal records earlier versions kept with the changes: never shown


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


# a record's values in column order, read in C (asdict deep-copies every value: 9 µs against 0.2 per record)
_COLUMNS = operator.attrgetter(*(field.name for field in fields(AuditRecord)))


@dataclass(frozen=True, slots=True)
class Refusal:
    """An admin command someone else asked for: the latest time, what it asked about, and how many times."""

    at: float
    action: str  # "stats" or "audit"
    staff_id: str
    corp_id: str
    subject: str
    count: int


def name_key(name: str) -> str:
    return name.strip().casefold()


class AuditStore(Protocol):
    async def record(self, entry: AuditRecord) -> None: ...

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        """The newest `limit` changes of the calendar with this id or name (ignoring case), oldest first; only the
        organization's when `corp_id` is given (an ISV app's admin)."""
        ...

    async def refuse(self, refusal: Refusal) -> None:
        """Note a refused admin command: the sender's row for that command is updated (count + 1), not added to."""
        ...

    async def refusals(self, corp_id: str) -> list[Refusal]:
        """The organization's refused admin commands (at most MAX_REFUSALS), oldest first."""
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
            connection.execute(
                "CREATE TABLE IF NOT EXISTS audit_refusals (corp_id TEXT, staff_id TEXT, action TEXT, at REAL,"
                " subject TEXT, count INTEGER, PRIMARY KEY (corp_id, staff_id, action)) WITHOUT ROWID"
            )
            connection.execute("DELETE FROM audit WHERE result = ?", (REFUSED,))  # kept apart now

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
        rows = [(*_COLUMNS(entry), name_key(entry.name)) for entry, _ in batch]
        connection.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    async def latest(self, calendar: str, limit: int, corp_id: str | None = None) -> list[AuditRecord]:
        rows = await self._database.execute(
            "SELECT at, action, staff_id, corp_id, union_id, calendar_id, name, result, code, request_id, msg_id"
            " FROM audit WHERE (calendar_id = ? OR (name_key = ? AND name_key != '')) AND at >= ? AND result != ?"
            " AND (? IS NULL OR corp_id = ?) ORDER BY at DESC, rowid DESC LIMIT ?",
            (calendar, name_key(calendar), time.time() - KEEP_SECONDS, REFUSED, corp_id, corp_id, limit),
        )
        return [AuditRecord(*row) for row in reversed(rows)]

    async def refuse(self, refusal: Refusal) -> None:
        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO audit_refusals VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (corp_id, staff_id, action)"
                " DO UPDATE SET at = excluded.at, subject = excluded.subject, count = count + 1",
                (refusal.corp_id, refusal.staff_id, refusal.action, refusal.at, refusal.subject[:MAX_REFUSED_SUBJECT]),
            )
            connection.execute(
                "DELETE FROM audit_refusals WHERE corp_id = ? AND (at < ? OR (staff_id, action) NOT IN"
                " (SELECT staff_id, action FROM audit_refusals WHERE corp_id = ? ORDER BY at DESC LIMIT ?))",
                (refusal.corp_id, time.time() - KEEP_SECONDS, refusal.corp_id, MAX_REFUSALS),
            )

        await self._database.transaction(write)

    async def refusals(self, corp_id: str) -> list[Refusal]:
        rows = await self._database.execute(
            "SELECT at, action, staff_id, corp_id, subject, count FROM audit_refusals WHERE corp_id = ? AND at >= ?"
            " ORDER BY at DESC LIMIT ?",
            (corp_id, time.time() - KEEP_SECONDS, MAX_REFUSALS),
        )
        return [Refusal(*row) for row in reversed(rows)]


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

    def __init__(self, redis: CommandBatcher, namespace: str, per_organization: bool = False) -> None:
        self._redis = redis
        self._prefix = f"calbot:{namespace}:audit:"
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
