"""The embedded SQLite database: WAL on disk, calls off the event loop and in order, transactions all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.stores.sqlite.database import BACKSTOP_PAGES, CHECKPOINT_SECONDS, Database


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
