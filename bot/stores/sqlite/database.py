"""The embedded SQLite database in BOT_STATE_DIR: calls on a thread of its own, so the loop never waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import queue
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("bot.database")
BUSY_TIMEOUT_MS = 5_000  # another process (a second bot on the same disk) holding the write lock
DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
CHECKPOINT_SECONDS = 1.0  # at most this long between a write and the checkpoint that copies it into the file
# pages in the WAL before a commit checkpoints by itself (SQLite's default is 1,000): only if the checkpointer lags
BACKSTOP_PAGES = 10_000
RESTART_PAGES = 1_000  # a WAL this long is started again from its beginning once wholly copied (SQLite's default)
# A batch of at most this many statements that can be written without waiting is written on the loop (see
# apply()): at a steady rate nearly every journal write is one or two statements, about 0.1 ms
QUICK_STATEMENTS = 8
SLOW_QUICK_WRITE_SECONDS = 0.010  # a quick write that took longer (a disk holding it back, or the CPUs busy) ...
THREAD_ONLY_SECONDS = 60.0  # ... sends every write to the thread for this long
_WAITS = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# In the wal-index (the -shm file, https://www.sqlite.org/walformat.html), in the machine's byte order: the WAL's
# last frame (mxFrame, in the header's first copy) and how many frames are copied into the database (nBackfill)
_FRAME_NUMBER = struct.Struct("=I")
_MAX_FRAME_AT, _BACKFILL_AT = 16, 96
_GLOB_SPECIAL = re.compile(r"[*?\[]")

_Call = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


def glob_prefix(text: str) -> str:
    """A GLOB pattern for the values that start with `text`, matched literally and case for case (LIKE ignores ASCII
    case: an organization whose id differs only in case is another organization)."""
    return _GLOB_SPECIAL.sub(r"[\g<0>]", text) + "*"


def damaged(error: BaseException) -> bool:
    """The file is not a database, or its contents are corrupt (not: busy, locked, read-only, cannot be opened)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in DAMAGED


class Database:
    """One SQLite file, opened in WAL mode; every call runs on a single worker thread, in the order it was made.
    A second thread checkpoints the WAL in the background, so no commit pays for the checkpoint's fsyncs. With
    `quick_writes`, apply() writes a small batch on the loop itself when nothing can make it wait (see there)."""

    def __init__(self, path: Path, *, quick_writes: bool = False) -> None:
        self.path = path
        self._quick_writes = quick_writes
        self._quick: sqlite3.Connection | None = None  # the loop's own connection, made on the thread
        self._wal_index: mmap.mmap | None = None  # read by quick writes, see _apply_quickly()
        self._thread_only_until = 0.0
        self._on_thread = 0  # calls queued or running on the worker thread
        # a thread fed by a queue, not an executor: a call costs one put and one call_soon_threadsafe
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        self._written = threading.Event()  # set by the worker after a call, cleared by the checkpointer
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None

    async def open(self) -> Database:
        await self.run(self._connect)
        return self

    def _connect(self, _: sqlite3.Connection | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit: each statement is its own transaction unless a caller opens one with transaction()
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
            connection.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across a crash, one fsync less
            # a checkpoint inside a commit held it for its fsyncs (6-23 ms, every 1-2 s under load): the
            # checkpointer thread does it instead, and commits checkpoint only past the backstop
            connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        except BaseException:
            connection.close()  # a damaged file is not held open: it may be moved aside
            raise
        self._connection = connection
        if self._checkpointer is None:
            self._closing.clear()  # opened again after a close
            self._checkpointer = threading.Thread(
                target=self._checkpoint, name=f"sqlite-{self.path.stem}-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            work, future, loop = call
            try:
                if self._connection is None:
                    self._connect()
                assert self._connection is not None
                outcome: tuple[Any, BaseException | None] = (work(self._connection), None)
            except BaseException as error:  # handed to the caller, as an executor would
                outcome = (None, error)
            if self._quick_writes and self._quick is None and self._connection is not None:
                # made after a first call (a store's schema is created then), so its first write reads no schema
                with contextlib.suppress(Exception):  # without it every write goes to this thread; it never ends it
                    self._quick, self._wal_index = _quick_connection(self.path)
            if not self._written.is_set():
                self._written.set()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it any more
                loop.call_soon_threadsafe(self._settle, future, *outcome)

    def _checkpoint(self) -> None:
        """Every CHECKPOINT_SECONDS while there are writes (never when idle), copy the WAL into the file (PASSIVE:
        never waits for the writer or the readers, and they never wait for it) on a connection of its own."""
        connection: sqlite3.Connection | None = None
        try:
            # checked before each wait for a write: a close() whose `_written.set()` came as the wait below timed
            # out is undone by the clear() after it, and nothing else would wake this thread again
            while not self._closing.is_set():
                self._written.wait()
                if self._closing.wait(CHECKPOINT_SECONDS):
                    return
                self._written.clear()
                try:
                    if connection is None:
                        # no busy wait (Python's default is 5 s): a write under way makes RESTART give up at once
                        connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                    _, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if logged >= RESTART_PAGES:
                        # the few frames committed while the pass ran, copied while no write is under way (one in
                        # progress makes it give up until the next second), so that the next commit starts the WAL
                        # from its beginning again instead of growing the file
                        _, logged, copied = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                    if self._quick_writes and logged == copied:
                        _start_again(connection)
                except sqlite3.Error:  # the backstop checkpoints within commits; the next write tries again
                    if connection is not None:
                        connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the database thread; the caller awaits without blocking the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, name=f"sqlite-{self.path.stem}", daemon=True)
            self._worker.start()
        self._on_thread += 1
        self._calls.put((work, future, loop))
        return await future

    def _settle(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """On the loop, once the thread is done with a call (even one its caller stopped waiting for)."""
        self._on_thread -= 1
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement; its rows (empty for a write)."""
        return await self.run(lambda connection: connection.execute(sql, tuple(parameters)).fetchall())

    async def delete_rows(self, sql: str, parameters: Iterable[Any] = ()) -> int:
        """One DELETE; how many rows it deleted."""
        return await self.run(lambda connection: int(connection.execute(sql, tuple(parameters)).rowcount))

    async def apply(self, statements: Sequence[tuple[str, Sequence[Any]]], *, quick: bool = False) -> list[int]:
        """The statements as one transaction; each one's row count. One statement alone is its own transaction
        (autocommit, all or nothing as well): no BEGIN and COMMIT around it, two calls into SQLite fewer, each of
        which lets go of the GIL and takes it back while the loop's thread may want it (at a steady rate most batches
        hold one statement). `quick`: see _apply_quickly()."""
        if quick:
            counts = self._apply_quickly(statements)
            if counts is not None:
                return counts
        if len(statements) == 1:
            sql, parameters = statements[0]
            return await self.run(lambda connection: [connection.execute(sql, parameters).rowcount])
        return await self.transaction(lambda connection: _apply(connection, statements))

    def _apply_quickly(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int] | None:
        """Write a small batch on the loop when nothing can make it wait; None when it must go to the thread.
        Measured at a steady 100 commands/s, the hand-off to the thread and back (two thread wake-ups, the GIL passed
        back and forth, each delayed on shared cores) cost a command more CPU and latency than the write itself. The
        loop's connection never waits for a lock (busy_timeout 0: a lock held by anyone sends the batch to the
        thread, which waits for it), never checkpoints in a commit (wal_autocheckpoint 0) and never syncs: WAL with
        synchronous=NORMAL syncs at checkpoints, made by the checkpointer thread, and when a write starts the WAL
        again from its beginning, which it does when every frame had been copied as it began (by anyone): the
        wal-index shows that (mxFrame = nBackfill), and such a write goes to the thread (after its own passes the
        checkpointer starts the WAL again itself, so that quick writes go on). What is left is SQLite's own work and
        writes into the page cache, like a log line's; one that still took over SLOW_QUICK_WRITE_SECONDS sends
        every write to the thread for THREAD_ONLY_SECONDS."""
        connection, wal_index = self._quick, self._wal_index
        if (
            connection is None
            or wal_index is None
            or self._on_thread  # the batch before this one is still on the thread: this one lands after it
            or len(statements) > QUICK_STATEMENTS
            or time.monotonic() < self._thread_only_until
        ):
            return None
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # with the write lock held no frame can be added, so a WAL wholly copied now was so as this write
                # began: its first frame would start the WAL again (and sync its header); on the thread instead
                if _wholly_copied(wal_index):
                    connection.execute("ROLLBACK")
                    return None
                counts = _apply(connection, statements)
            except BaseException:
                if connection.in_transaction:  # SQLite has rolled back itself after some errors (a full disk)
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return counts
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF in _WAITS:  # nothing was written: the thread waits for the lock
                return None
            raise
        finally:
            if (took := time.perf_counter() - started) > SLOW_QUICK_WRITE_SECONDS:
                self._thread_only_until = time.monotonic() + THREAD_ONLY_SECONDS
                fields = {"file": self.path.name, "ms": round(took * 1000, 1), "seconds": THREAD_ONLY_SECONDS}
                log.warning("quick write slow: writes go to the database thread for a while", extra={"fields": fields})
            elif not self._written.is_set():
                self._written.set()  # the checkpointer copies it within CHECKPOINT_SECONDS

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Several statements as one transaction: all or nothing, one commit (one fsync) for all of them."""

        def atomically(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return await self.run(atomically)

    async def close(self) -> None:
        def close(connection: sqlite3.Connection) -> None:
            connection.close()
            self._connection = None
            if self._quick is not None:
                self._quick.close()
                self._quick = None
            if self._wal_index is not None:
                self._wal_index.close()
                self._wal_index = None

        if self._connection is not None:
            await self.run(close)
        self._closing.set()
        self._written.set()  # wakes the checkpointer to see it is closing
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._worker is not None:
            self._calls.put(None)
            await asyncio.to_thread(self._worker.join)
        self._worker = self._checkpointer = None


def _apply(connection: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
    return [connection.execute(*each).rowcount for each in statements]


def _start_again(connection: sqlite3.Connection) -> None:
    """The WAL is copied whole: start it again here, with a write of nothing new, so that the next quick write
    finds frames to add to (a writer held the lock: the next write starts it, on the thread, see _apply_quickly)."""
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        connection.execute(f"PRAGMA user_version = {version}")
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF not in _WAITS:
            raise


def _wholly_copied(wal_index: mmap.mmap) -> bool:
    """Every frame of the WAL is copied into the database (or it has none): the next write starts it again from its
    beginning and SQLite syncs its new header."""
    return _FRAME_NUMBER.unpack_from(wal_index, _MAX_FRAME_AT) == _FRAME_NUMBER.unpack_from(wal_index, _BACKFILL_AT)


def _quick_connection(path: Path) -> tuple[sqlite3.Connection, mmap.mmap]:
    """The loop's connection for quick writes (made on the database thread): it never waits or checkpoints; and the
    WAL's index, mapped to read (the file SQLite maps itself, next to the database)."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the schema read here, not on the loop
        with path.with_name(path.name + "-shm").open("rb") as file:
            wal_index = mmap.mmap(file.fileno(), _BACKFILL_AT + _FRAME_NUMBER.size, access=mmap.ACCESS_READ)
    except BaseException:
        connection.close()
        raise
    return connection, wal_index
