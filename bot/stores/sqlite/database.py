"""The embedded SQLite database in BOT_STATE_DIR: one connection on one thread of its own, so the loop never waits."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5_000  # another process (a second bot on the same disk) holding the write lock
DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
CHECKPOINT_SECONDS = 1.0  # at most this long between a write and the checkpoint that copies it into the file
# pages in the WAL before a commit checkpoints by itself (SQLite's default is 1,000): only if the checkpointer lags
BACKSTOP_PAGES = 10_000
RESTART_PAGES = 1_000  # a WAL this long is started again from its beginning once wholly copied (SQLite's default)
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
    A second thread checkpoints the WAL in the background, so no commit pays for the checkpoint's fsyncs."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
            if not self._written.is_set():
                self._written.set()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it any more
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def _checkpoint(self) -> None:
        """Every CHECKPOINT_SECONDS while there are writes (never when idle), copy the WAL into the file (PASSIVE:
        never waits for the writer or the readers, and they never wait for it) on a connection of its own."""
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._written.wait()
                if self._closing.wait(CHECKPOINT_SECONDS):
                    return
                self._written.clear()
                try:
                    if connection is None:
                        # no busy wait (Python's default is 5 s): a write under way makes RESTART give up at once
                        connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                    _, logged, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if logged >= RESTART_PAGES:
                        # the few frames committed while the pass ran, copied while no write is under way (one in
                        # progress makes it give up until the next second), so that the next commit starts the WAL
                        # from its beginning again instead of growing the file
                        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
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
        self._calls.put((work, future, loop))
        return await future

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement; its rows (empty for a write)."""
        return await self.run(lambda connection: connection.execute(sql, tuple(parameters)).fetchall())

    async def delete_rows(self, sql: str, parameters: Iterable[Any] = ()) -> int:
        """One DELETE; how many rows it deleted."""
        return await self.run(lambda connection: int(connection.execute(sql, tuple(parameters)).rowcount))

    async def apply(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """The statements as one transaction; each one's row count. One statement alone is its own transaction
        (autocommit, all or nothing as well): no BEGIN and COMMIT around it, two calls into SQLite fewer, each of
        which lets go of the GIL and takes it back while the loop's thread may want it (at a steady rate most batches
        hold one statement)."""
        if len(statements) == 1:
            sql, parameters = statements[0]
            return await self.run(lambda connection: [connection.execute(sql, parameters).rowcount])
        return await self.transaction(lambda connection: [connection.execute(*each).rowcount for each in statements])

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


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
