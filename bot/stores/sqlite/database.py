"""The embedded SQLite database in BOT_STATE_DIR: one connection on one thread of its own, so the loop never waits."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5_000  # another process (a second bot on the same disk) holding the write lock
DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_LIKE_SPECIAL = re.compile(r"[%_\\]")


def like_prefix(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') for the values that start with `text`, matched literally."""
    return _LIKE_SPECIAL.sub(r"\\\g<0>", text) + "%"


def damaged(error: BaseException) -> bool:
    """The file is not a database, or its contents are corrupt (not: busy, locked, read-only, cannot be opened)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in DAMAGED


class Database:
    """One SQLite file, opened in WAL mode; every call runs on a single worker thread, in the order it was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        self._connection: sqlite3.Connection | None = None

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
        except BaseException:
            connection.close()  # a damaged file is not held open: it may be moved aside
            raise
        self._connection = connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the database thread; the caller awaits without blocking the loop."""

        def call() -> T:
            if self._connection is None:
                self._connect()
            assert self._connection is not None
            return work(self._connection)

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement; its rows (empty for a write)."""
        return await self.run(lambda connection: connection.execute(sql, tuple(parameters)).fetchall())

    async def delete_rows(self, sql: str, parameters: Iterable[Any] = ()) -> int:
        """One DELETE; how many rows it deleted."""
        return await self.run(lambda connection: int(connection.execute(sql, tuple(parameters)).rowcount))

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
        self._thread.shutdown(wait=True)
