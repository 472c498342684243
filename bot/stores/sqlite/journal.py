"""The intake journal in SQLite (BOT_STATE_DIR/journal.sqlite3, WAL): a file of its own, since a damaged journal is
moved aside and started afresh while a damaged bot.sqlite3 (grants, the suite ticket) stops the bot."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bot.models import Message
from bot.stores.batching import Batcher
from bot.stores.journal import CARD, Entry, Unwritable, dump_message, load_message
from bot.stores.sqlite.database import Database, damaged

log = logging.getLogger("bot.journal")

WRITE_WAIT_MS = 1_000  # another process holding the file's write lock; the ACK must go out within DingTalk's 3 s
PURGE_EVERY_SECONDS = 60.0
# a finish after the card step waits at most this long for another write to go out with (see finish())
FINISH_WITHIN_SECONDS = 1.0
# progress of finished entries, and of none (left by a version that did not journal connect-* commands)
_PURGE_FINISHED_PROGRESS = "DELETE FROM progress WHERE msg_id NOT IN (SELECT msg_id FROM entries WHERE done_at IS NULL)"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE,"
    " message BLOB, attempts INTEGER NOT NULL DEFAULT 1, done_at REAL)",
    "CREATE INDEX IF NOT EXISTS entries_done ON entries (done_at)",
    "CREATE TABLE IF NOT EXISTS progress (msg_id TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (msg_id, key)) WITHOUT ROWID",
    # records of another store (the audit's, in bot.sqlite3) kept here until it has them: see keep()
    "CREATE TABLE IF NOT EXISTS kept (id INTEGER PRIMARY KEY, record BLOB NOT NULL)",
)
_KEEP = "INSERT OR REPLACE INTO kept (id, record) VALUES (?, ?)"  # replaces only after the clock went back
_DROP_KEPT = "DELETE FROM kept WHERE id BETWEEN ? AND ?"

_FINISH = "UPDATE entries SET message = NULL, done_at = ? WHERE msg_id = ?"
_ADD = (
    "INSERT INTO entries (msg_id, message) VALUES (?, ?) ON CONFLICT (msg_id) DO UPDATE SET message = excluded.message,"
    " attempts = 1, done_at = NULL WHERE done_at < ?"
)


class SqliteJournal:
    """BOT_STATE_DIR/journal.sqlite3 (WAL). Writes queued while a batch is being committed go together in the next
    transaction, so a burst costs one commit per batch, not one per message. On a thread of its own: a message's ACK
    never waits for the bot's database (a lock held on it, a long removal)."""

    def __init__(self, path: Path, remember_seconds: float) -> None:
        self._database = Database(path, quick_writes=True)
        self._remember_seconds = remember_seconds
        self._batches: Batcher[tuple[str, tuple[Any, ...]], int] = Batcher(self._write_batch, gather_one_turn=True)
        self._purge_at = 0.0
        self._health = Unwritable()
        self._carded: set[str] = set()  # messages whose card step is recorded true (their card may be out)
        # ids of kept records, rising across restarts (a process starts nanoseconds after the last one's first id)
        self._kept_ids = itertools.count(time.time_ns())

    async def open(self) -> list[Entry]:
        try:
            try:
                rows, progress = await self._database.transaction(_open_entries)
            except sqlite3.DatabaseError as error:
                if not damaged(error):
                    raise
                await self._set_aside(error)  # durability comes back by itself, with a fresh file
                rows, progress = await self._database.transaction(_open_entries)
        except (sqlite3.Error, OSError) as error:
            self._health.failed(error)
            return []
        steps: dict[str, dict[str, Any]] = {}
        for msg_id, key, value in progress:
            steps.setdefault(msg_id, {})[key] = value
        entries = []
        for msg_id, raw, attempts in rows:
            try:
                done = {key: orjson.loads(value) for key, value in steps.get(msg_id, {}).items()}
                entries.append(Entry(load_message(raw), attempts, done))
            except (ValueError, TypeError):  # without its steps, a resumed handling could repeat a change
                log.error("journal entry unreadable, dropped", extra={"fields": {"msg_id": msg_id}})
                await self.finish(msg_id)
        return entries

    async def _set_aside(self, error: sqlite3.DatabaseError) -> None:
        """Move the unreadable file (and its -wal, -shm) aside under a name that says when, say how many unfinished
        entries and kept records it held (if that can still be read), and start a fresh journal in its place."""
        path = self._database.path
        await self._database.close()
        aside, lost, kept = await asyncio.to_thread(_move_aside, path)
        unknown = "unknown: it cannot be read"
        fields = {
            "moved_to": str(aside),
            "unrecovered": lost if lost is not None else unknown,
            "audit_records_not_stored": kept if kept is not None else unknown,
            "error": f"{type(error).__name__}: {error}"[:200],
        }
        log.error(
            "journal unreadable: moved aside, its unfinished commands are not answered; a fresh journal is used",
            extra={"fields": fields},
        )
        self._database = Database(path, quick_writes=True)

    async def add(self, message: Message) -> bool:
        forgotten = time.time() - self._remember_seconds  # finished before the dedupe window: a new message
        return await self._write(_ADD, (message.key, dump_message(message), forgotten)) != 0

    async def record(self, msg_id: str, key: str, value: Any) -> None:
        if key == CARD and not value:  # written back: DingTalk surely did not take the card
            self._carded.discard(msg_id)
        sql = "INSERT OR REPLACE INTO progress (msg_id, key, value) VALUES (?, ?, ?)"
        await self._write(sql, (msg_id, key, orjson.dumps(value)))

    async def record_held(self, msg_id: str, key: str, value: Any, seconds: float) -> bool:
        await self.record(msg_id, key, value)
        return True  # one process per file; a file that cannot be written is said loudly (no durability to wait for)

    async def mark_card(self, msg_id: str, seconds: float) -> bool:
        # one process per file; a file that cannot be written is said loudly and served without durability
        await self.record(msg_id, CARD, True)
        self._carded.add(msg_id)
        return True

    def release(self, msg_id: str) -> None:
        return None  # never asked: a step written here has landed (or the journal serves without durability)

    async def finish(self, msg_id: str) -> None:
        # kept, without its message, for the dedupe window: a repeat after a restart is still recognised
        # its progress rows go with the periodic purge: one statement per finished message, not two
        statement = (_FINISH, (time.time(), msg_id))
        if msg_id in self._carded:
            # its card step is durable: a finish lost to a kill only makes the restart find it answered and finish
            # it then (never a second card), so it need not land now; it goes with the next write (at steady
            # load the next command's) instead of a commit and a hand-off of its own
            self._carded.discard(msg_id)
            self._batches.submit_later(statement, FINISH_WITHIN_SECONDS)
            return
        await self._batches.submit(statement)

    def keep(self, record: bytes) -> int:
        """Keep another store's record here until that store has it (stored()); its id. Not awaited: it goes with
        this process's journal writes in their order, so it has landed no later than the next step any command
        records (the audit's record of a change lands with, or before, its command's card step, without a
        hand-off to the bot's database on the way to the card)."""
        kept_id = next(self._kept_ids)
        self._write(_KEEP, (kept_id, record))
        return kept_id

    def stored(self, first: int, last: int) -> None:
        """The other store has the kept records with these ids and those between: dropped with the next write, or
        within FINISH_WITHIN_SECONDS (a drop lost to a kill leaves records the next start finds written)."""
        self._batches.submit_later((_DROP_KEPT, (first, last)), FINISH_WITHIN_SECONDS)

    async def take_kept(self) -> list[tuple[int, bytes]]:
        """What an earlier process kept and may not have handed over (a kill, a failed write), oldest first; call
        drop_kept() once the other store has them. Read before the journal opens, on its own file: a damaged file
        is set aside here already (its records cannot be read, the log counts them if it can)."""
        try:
            return await self._database.run(_kept_rows)
        except sqlite3.DatabaseError as error:
            if not damaged(error):
                raise
            await self._set_aside(error)
            return []

    async def drop_kept(self, through: int) -> None:
        await self._database.execute(_DROP_KEPT, (0, through))

    def resume_elsewhere(self, resume: Callable[[list[Entry]], None]) -> None:
        return None  # one process per file: nobody else leaves entries behind while this one runs

    async def close(self) -> None:
        await self._batches.drained()
        await self._database.close()

    def _write(self, sql: str, parameters: tuple[Any, ...]) -> asyncio.Future[int]:
        return self._batches.submit((sql, parameters))

    async def _write_batch(self, batch: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        # a commit costs as much as the statements of many messages: the batcher lets every write made in one more
        # turn of the event loop join this batch (measured: 0.45 → 0.17 ms per command in a burst; a timed window
        # would gather more but cost latency at low load)
        statements = list(batch)
        purging = time.monotonic() >= self._purge_at
        if purging:  # a minute's finished entries: on the database thread, never a quick write on the loop
            self._purge_at = time.monotonic() + PURGE_EVERY_SECONDS
            statements += [
                (_PURGE_FINISHED_PROGRESS, ()),
                ("DELETE FROM entries WHERE done_at < ?", (time.time() - self._remember_seconds,)),
            ]
        try:
            counts = await self._database.apply(statements, quick=not purging)
            # only an entry written says accepted commands survive a crash: on a full disk a finish that clears a
            # row, or changes none, still commits
            if any(sql is _ADD for sql, _ in batch):
                self._health.succeeded()
        except (sqlite3.Error, OSError) as error:
            self._health.failed(error)
            counts = [1] * len(statements)  # as if written: the message is handled, only not durably
        return counts[: len(batch)]


def _open_entries(connection: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    connection.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
    for statement in _SCHEMA:
        connection.execute(statement)
    rows = connection.execute(
        "SELECT msg_id, message, attempts FROM entries WHERE done_at IS NULL ORDER BY seq"
    ).fetchall()
    progress = connection.execute(
        "SELECT progress.msg_id, key, value FROM progress JOIN entries USING (msg_id) WHERE done_at IS NULL"
    ).fetchall()
    connection.execute("UPDATE entries SET attempts = attempts + 1 WHERE done_at IS NULL")
    return rows, progress


def _kept_rows(connection: sqlite3.Connection) -> list[tuple[int, bytes]]:
    connection.execute(_SCHEMA[-1])
    return connection.execute("SELECT id, record FROM kept ORDER BY id").fetchall()


def _move_aside(path: Path) -> tuple[Path, int | None, int | None]:
    """Rename the journal's files after the time (never over an earlier one); the new name, and the numbers of
    unfinished entries and of kept records the moved file holds (None where they cannot be read)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.unreadable-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.unreadable-{stamp}-{number}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    unfinished = _count(aside, "SELECT count(*) FROM entries WHERE done_at IS NULL")
    return aside, unfinished, _count(aside, "SELECT count(*) FROM kept")


def _count(database: Path, sql: str) -> int | None:
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as connection:
            return int(connection.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return None
