"""The embedded SQLite database: WAL on disk, calls off the event loop and in order, transactions all or nothing; small
writes on the loop only when nothing can make them wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from bot.stores.sqlite import database as database_module
from bot.stores.sqlite.database import (
    BACKSTOP_PAGES,
    CHECKPOINT_SECONDS,
    QUICK_STATEMENTS,
    SLOW_QUICK_WRITE_SECONDS,
    THREAD_ONLY_SECONDS,
    Database,
    _wholly_copied,
)


async def test_the_file_is_created_in_wal_mode_and_keeps_what_was_written(tmp_path: Path) -> None:
    database = await Database(tmp_path / "state" / "bot.sqlite3").open()
    await database.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT)")
    await database.execute("INSERT INTO kv VALUES (?, ?)", ("a", "1"))
    assert await database.execute("PRAGMA journal_mode") == [("wal",)]
    await database.close()

    reopened = await Database(tmp_path / "state" / "bot.sqlite3").open()
    assert await reopened.execute("SELECT value FROM kv WHERE key = ?", ("a",)) == [("1",)]
    await reopened.close()


async def test_work_runs_on_one_thread_that_is_not_the_loops_and_in_the_order_it_was_asked(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    await database.execute("CREATE TABLE log (n INTEGER)")
    threads: set[int] = set()

    def insert(n: int) -> Callable[[sqlite3.Connection], None]:
        def work(connection: sqlite3.Connection) -> None:
            threads.add(threading.get_ident())
            connection.execute("INSERT INTO log VALUES (?)", (n,))

        return work

    await asyncio.gather(*(database.run(insert(n)) for n in range(50)))

    assert await database.execute("SELECT n FROM log ORDER BY rowid") == [(n,) for n in range(50)]
    assert len(threads) == 1 and threading.get_ident() not in threads
    await database.close()


async def test_a_failing_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    await database.execute("CREATE TABLE kv (key TEXT PRIMARY KEY)")

    def two_inserts_then_a_failure(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO kv VALUES ('a')")
        connection.execute("INSERT INTO kv VALUES ('a')")  # primary key violated

    with pytest.raises(sqlite3.IntegrityError):
        await database.transaction(two_inserts_then_a_failure)
    assert await database.execute("SELECT count(*) FROM kv") == [(0,)]
    await database.close()


async def test_writes_reach_the_file_by_a_background_checkpoint_not_by_the_commits(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    database = await Database(path).open()
    assert await database.execute("PRAGMA wal_autocheckpoint") == [(BACKSTOP_PAGES,)]
    await database.execute("CREATE TABLE kv (key INTEGER PRIMARY KEY, value BLOB)")
    empty = path.stat().st_size
    for key in range(20):  # about 80 pages: far below the backstop, so no commit checkpoints them itself
        await database.execute("INSERT INTO kv VALUES (?, ?)", (key, b"x" * 16_000))

    deadline = asyncio.get_running_loop().time() + 10 * CHECKPOINT_SECONDS
    while path.stat().st_size < empty + 20 * 16_000:  # copied from the WAL into the file
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint within 10 s"
        await asyncio.sleep(0.05)
    await database.close()


async def test_a_closed_database_opens_again_and_checkpoints_again(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    database = await Database(path).open()
    await database.close()
    await database.open()
    await database.execute("CREATE TABLE kv (value BLOB)")
    empty = path.stat().st_size
    await database.execute("INSERT INTO kv VALUES (?)", (b"x" * 64_000,))

    deadline = asyncio.get_running_loop().time() + 10 * CHECKPOINT_SECONDS
    while path.stat().st_size < empty + 64_000:
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint within 10 s"
        await asyncio.sleep(0.05)
    await database.close()


class _LateTimeout(threading.Event):
    """The checkpointer's timed wait for the close, timing out once just as close() sets both events: what a thread
    sees when its wait ends and it then waits for the GIL while the loop's thread closes (seen: a stop that hung)."""

    def __init__(self) -> None:
        super().__init__()
        self.timing_out = threading.Event()  # the checkpointer is inside its timed wait
        self.closed = threading.Event()  # close() has set both events
        self._once = True

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None or not self._once:
            return super().wait(timeout)
        self._once = False
        self.timing_out.set()
        self.closed.wait()
        return False  # timed out, as far as the checkpointer can tell


class _Written(threading.Event):
    def __init__(self, closing: _LateTimeout) -> None:
        super().__init__()
        self._closing = closing

    def set(self) -> None:
        super().set()
        if self._closing.is_set():  # close() sets closing first, then this
            self._closing.closed.set()


async def test_a_close_just_as_the_checkpointers_wait_ends_still_stops_it(tmp_path: Path) -> None:
    database = Database(tmp_path / "bot.sqlite3")
    closing = database._closing = _LateTimeout()
    written = database._written = _Written(closing)
    await database.open()
    await database.execute("CREATE TABLE kv (value BLOB)")  # a write: the checkpointer waits a second, then copies
    assert await asyncio.to_thread(closing.timing_out.wait, 10)

    try:
        await asyncio.wait_for(database.close(), 5)
    finally:
        written.set()  # a checkpointer left waiting for a write would hold the test's process at its exit


async def test_statements_applied_together_are_one_transaction_and_one_alone_needs_no_begin(tmp_path: Path) -> None:
    database = await Database(tmp_path / "bot.sqlite3").open()
    await database.execute("CREATE TABLE log (n INTEGER PRIMARY KEY)")
    traced: list[str] = []
    await database.run(lambda connection: connection.set_trace_callback(traced.append))

    insert = "INSERT INTO log VALUES (?)"
    assert await database.apply([(insert, (1,))]) == [1]
    assert traced == ["INSERT INTO log VALUES (1)"]  # autocommit: no BEGIN and COMMIT calls around it

    traced.clear()
    assert await database.apply([(insert, (2,)), ("DELETE FROM log", ())]) == [1, 2]
    assert traced[0] == "BEGIN IMMEDIATE" and traced[-1] == "COMMIT"
    with pytest.raises(sqlite3.IntegrityError):  # all or nothing: the first is rolled back with the second
        await database.apply([(insert, (3,)), (insert, (3,))])
    assert await database.execute("SELECT n FROM log") == []
    await database.close()


@pytest.fixture
def no_breaker_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's other worker and its bots can hold up one quick write past SLOW_QUICK_WRITE_SECONDS; a test of
    where writes go must not depend on the machine's load (the breaker has a test of its own)."""
    monkeypatch.setattr(database_module, "SLOW_QUICK_WRITE_SECONDS", 60.0)


async def _quick_database(path: Path) -> Database:
    database = await Database(path, quick_writes=True).open()
    await database.execute("CREATE TABLE log (n INTEGER PRIMARY KEY, value BLOB)")  # its quick connection made after
    return database


def _wal_starts(path: Path) -> int:
    """How often the WAL was started again from its beginning: its header's first salt, one more each time."""
    return int.from_bytes(path.with_name(path.name + "-wal").read_bytes()[16:20], "big")


async def _written(coroutine: Coroutine[Any, Any, list[int]]) -> tuple[list[int], bool]:
    """The write's result, and whether it finished without once giving the loop back (no hand-off to the thread)."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as done:
        return cast(list[int], done.value), True
    while True:  # driven on as a task would drive it
        await asyncio.wait([waiting])
        try:
            waiting = coroutine.send(None)
        except StopIteration as done:
            return cast(list[int], done.value), False


INSERT = "INSERT INTO log (n) VALUES (?)"


@pytest.mark.usefixtures("no_breaker_on_a_busy_machine")
async def test_a_small_batch_is_written_on_the_loop_at_once_and_a_larger_one_on_the_thread(tmp_path: Path) -> None:
    database = await _quick_database(tmp_path / "journal.sqlite3")

    assert await _written(database.apply([(INSERT, (1,))], quick=True)) == ([1], True)
    eight = [(INSERT, (n,)) for n in range(2, 2 + QUICK_STATEMENTS)]
    assert await _written(database.apply(eight, quick=True)) == ([1] * QUICK_STATEMENTS, True)
    nine = [(INSERT, (n,)) for n in range(20, 21 + QUICK_STATEMENTS)]
    assert await _written(database.apply(nine, quick=True)) == ([1] * (QUICK_STATEMENTS + 1), False)
    assert await _written(database.apply([(INSERT, (40,))])) == ([1], False)  # not asked to be quick
    with pytest.raises(sqlite3.IntegrityError):  # all or nothing, as on the thread
        await _written(database.apply([(INSERT, (50,)), (INSERT, (1,))], quick=True))
    assert await database.execute("SELECT count(*) FROM log WHERE n = 50") == [(0,)]
    await database.close()

    other = await Database(tmp_path / "bot.sqlite3").open()  # a database without quick writes: always the thread
    await other.execute("CREATE TABLE log (n INTEGER PRIMARY KEY)")
    assert await _written(other.apply([(INSERT, (1,))], quick=True)) == ([1], False)
    await other.close()


async def test_a_quick_write_never_waits_for_a_lock_it_goes_to_the_thread_and_lands_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    database = await _quick_database(path)
    holder = sqlite3.connect(path, isolation_level=None)  # another process's lock, as an operator's shell holds it
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    first = asyncio.create_task(database.apply([(INSERT, (1,))], quick=True))
    await asyncio.sleep(0.5)
    assert not first.done() and ticks >= 25  # waiting on the thread; the loop went on meanwhile
    holder.execute("COMMIT")  # the thread's lock wait notices within its next poll, not at once
    # asked while the first is still on the thread: after it, on the thread too, though the lock is free now
    assert await _written(database.apply([(INSERT, (2,))], quick=True)) == ([1], False)
    assert await first == [1]
    ticker.cancel()
    assert await database.execute("SELECT n FROM log ORDER BY rowid") == [(1,), (2,)]
    holder.close()
    await database.close()


async def test_a_slow_quick_write_sends_the_writes_to_the_thread_for_a_while_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = await _quick_database(tmp_path / "journal.sqlite3")
    huge = b"x" * 200_000_000  # copied into the WAL: well over SLOW_QUICK_WRITE_SECONDS on any disk
    assert await _written(database.apply([("INSERT INTO log VALUES (1, ?)", (huge,))], quick=True)) == ([1], True)

    assert await _written(database.apply([(INSERT, (2,))], quick=True)) == ([1], False)
    assert await _written(database.apply([(INSERT, (3,))], quick=True)) == ([1], False)
    assert [record.getMessage() for record in caplog.records] == [
        "quick write slow: writes go to the database thread for a while"
    ]
    fields = caplog.records[0].fields
    assert {**fields, "ms": 0} == {"file": "journal.sqlite3", "ms": 0, "seconds": THREAD_ONLY_SECONDS}
    assert fields["ms"] > SLOW_QUICK_WRITE_SECONDS * 1000
    await database.close()


@pytest.mark.usefixtures("no_breaker_on_a_busy_machine")
async def test_no_quick_write_starts_the_wal_again_the_thread_or_the_checkpointer_does(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    database = await _quick_database(path)
    holder = sqlite3.connect(path, isolation_level=None)
    for n in range(1, 4):
        starts = _wal_starts(path)
        assert await _written(database.apply([(INSERT, (n,))], quick=True)) == ([1], True)
        assert _wal_starts(path) == starts  # added to the WAL: no new header, nothing synced on the loop
        deadline = asyncio.get_running_loop().time() + 10 * CHECKPOINT_SECONDS
        # the checkpointer copied the whole WAL and started it again itself (its write committed)
        while _wal_starts(path) == starts or _wholly_copied(database._wal_index):
            assert asyncio.get_running_loop().time() < deadline, "the WAL was never started again"
            await asyncio.sleep(0.02)

    # copied whole by someone else (another process, or the thread's connection past its backstop): not started
    # again by the checkpointer, so the next write goes to the thread, which starts it; the one after is quick again
    holder.execute("PRAGMA wal_checkpoint(PASSIVE)")
    starts = _wal_starts(path)
    assert await _written(database.apply([(INSERT, (10,))], quick=True)) == ([1], False)
    assert _wal_starts(path) == starts + 1
    assert await _written(database.apply([(INSERT, (11,))], quick=True)) == ([1], True)
    holder.close()
    await database.close()
