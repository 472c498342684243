"""Benchmark of the intake journal: its CPU per command on SQLite and on Redis (in process, 256 commands in flight, the
writes of one `unsubscribe`), and how long a start with 1,000 unfinished entries takes to answer them all (the real
`python -m bot` against the sandbox). Usage: python bench/journal.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redisserver import RedisServer  # noqa: E402
from bench.run import ROOT as BENCH_ROOT  # noqa: E402
from bench.run import machine, seed  # noqa: E402
from bot.models import Message  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402
from bot.stores.journal import Journal  # noqa: E402
from bot.stores.keys import KeyBuilder  # noqa: E402
from bot.stores.redis.batch import CommandBatcher  # noqa: E402
from bot.stores.redis.client import connect  # noqa: E402
from bot.stores.redis.journal import RedisJournal  # noqa: E402
from bot.stores.sqlite.journal import SqliteJournal  # noqa: E402
from bot.stream.transport import message_from_callback  # noqa: E402

IN_FLIGHT = 256
REPLY = {"outcome": "unsubscribed", "data": {"calendar_id": "cal-1", "name": "", "request_id": "R"}, "actions": []}


def message(number: int) -> Message:
    data = Sandbox(client_id="bench").chat(f"unsubscribe cal-{number}", f"staff{number}")
    return message_from_callback(data, f"stream-{number}")


async def one_command(journal: Journal, item: Message) -> None:
    """What the journal writes for one `unsubscribe <id>`: the entry, the calendar about to change, its reply, the
    card about to go out, the end."""
    assert await journal.add(item)
    await journal.record(item.msg_id, "0cal/changing", ["cal-1", ""])
    await journal.record(item.msg_id, "0cal/reply", REPLY)
    assert await journal.mark_card(item.msg_id, 1.0)
    await journal.finish(item.msg_id)


async def cpu_per_command(journal: Journal, count: int) -> tuple[float, float]:
    """Milliseconds of this process's CPU (every thread) per command, and commands per second."""
    await journal.open()
    messages = [message(number) for number in range(count)]
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def limited(item: Message) -> None:
        async with slots:
            await one_command(journal, item)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(limited(item) for item in messages))
    cpu, seconds = time.process_time() - cpu, time.perf_counter() - started
    await journal.close()
    return cpu / count * 1000, count / seconds


async def resume_all(count: int, latency: float) -> float:
    """Seconds from starting `python -m bot` on a journal with `count` unfinished entries to their last card."""
    state = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    sandbox = Sandbox(latency=latency)
    await sandbox.start()
    try:
        messages = seed(sandbox, count, "r")
        journal = SqliteJournal(state / "journal.sqlite3", 600)
        await journal.open()
        for data in messages:
            await journal.add(message_from_callback(data, uuid.uuid4().hex))
        await journal.close()
        env = {**os.environ, **sandbox.bot_env(), "BOT_STATE_DIR": str(state), "BOT_API_QPS": "100000"}
        env.update(BOT_USER_RATE="100000", LOG_LEVEL="INFO")
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=BENCH_ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            await sandbox.wait_for(lambda: sandbox.calls("accessToken"), timeout=120)
            first_call = time.monotonic() - started
            await sandbox.wait_for(lambda: len(sandbox.webhook_replies) >= count, timeout=120)
            print(f"  first DingTalk call {first_call:.2f} s after the start")
            return time.monotonic() - started
        finally:
            process.terminate()
            await process.wait()
    finally:
        await sandbox.close()


async def main(options: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    n = options.commands
    with tempfile.TemporaryDirectory() as folder:
        sqlite = await cpu_per_command(SqliteJournal(Path(folder) / "journal.sqlite3", 600), n)
    print(
        f"SQLite journal: {sqlite[0]:.3f} ms CPU per command ({n} commands, {IN_FLIGHT} in flight, {sqlite[1]:.0f}/s)"
    )
    server = await RedisServer().start()
    try:
        batcher = CommandBatcher(connect(server.url, False))
        redis_journal = RedisJournal(batcher, KeyBuilder("bench"), "bench.1", 600, 30)
        redis = await cpu_per_command(redis_journal, n)
        await batcher.aclose()
    finally:
        server.stop()
    print(
        f"Redis journal: {redis[0]:.3f} ms CPU per command in the bot's process, redis-server's own not counted "
        f"({n} commands, {IN_FLIGHT} in flight, {redis[1]:.0f}/s)"
    )
    seconds = await resume_all(options.unfinished, options.latency / 1000)
    print(
        f"start with {options.unfinished} unfinished entries (SQLite), platform latency {options.latency:.0f} ms: "
        f"all answered {seconds:.2f} s after the process started"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=10_000, help="commands for the CPU figures (default 10000)")
    parser.add_argument("--unfinished", type=int, default=1000, help="entries left for the start (default 1000)")
    parser.add_argument("--latency", type=float, default=50.0, help="platform latency per call in ms (default 50)")
    import uvloop

    uvloop.run(main(parser.parse_args()))
