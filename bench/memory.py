"""Memory of the real `python -m bot` as distinct senders each send one `list`, against the loopback sandbox: RSS at
every checkpoint (the curve), and with --tracemalloc the bot's top allocators at each one. Paced: at most
--outstanding commands unanswered at once, so every one is handled and every cache fills. Burst: all pushed as fast
as the socket takes them, so the inbox overflows. Usage: python bench/memory.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import machine  # noqa: E402
from bot.sandbox.ids import staff_id_of, union_id_of  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402

FLUSH_EVERY = 5_000  # forget what the sandbox recorded this often: the bench process should not grow with the run
TOP = 15  # allocators shown per snapshot


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Replies:
    """Counts the replies the sandbox received, forgetting each request once counted."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.counted = 0

    @property
    def total(self) -> int:
        return self.counted + len(self.sandbox.webhook_replies)

    def flush(self) -> None:
        self.counted += len(self.sandbox.webhook_replies)
        self.sandbox.webhook_replies.clear()
        self.sandbox.requests.clear()
        self.sandbox.acks.clear()

    async def wait_beyond(self, count: int, seconds: float) -> bool:
        try:
            await self.sandbox.wait_for(lambda: self.total > count, seconds)
        except TimeoutError:
            return False
        return True


class Snapshots:
    """tracemalloc snapshots of the bot (run under bench/traced.py), asked for over its stdin."""

    def __init__(self, process: asyncio.subprocess.Process, directory: str, frames: int) -> None:
        self.process = process
        self.frames = frames
        self.directory = directory
        self.taken: list[tuple[int, Path]] = []

    async def take(self, senders: int) -> None:
        path = Path(self.directory) / f"bot-{senders}.snapshot"
        assert self.process.stdin is not None
        self.process.stdin.write(f"{path}\n".encode())
        await self.process.stdin.drain()
        deadline = time.monotonic() + 300
        # the bot's stdout is its log: the snapshot's file, renamed into place when whole, is the signal
        while not path.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        self.taken.append((senders, path))

    def report(self) -> None:
        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        ]
        first = None
        for senders, path in self.taken:
            snapshot = tracemalloc.Snapshot.load(str(path)).filter_traces(ignore)
            total = sum(stat.size for stat in snapshot.statistics("filename")) / 2**20
            print(f"\ntracemalloc at {senders} senders: {total:.1f} MiB traced; top allocators (line):")
            for stat in snapshot.statistics("lineno")[:TOP]:
                frame = stat.traceback[0]
                print(f"  {stat.size / 2**20:7.2f} MiB {stat.count:9d} blocks  {_short(frame.filename)}:{frame.lineno}")
            if self.frames > 1:
                print("  by the bot's own line that allocated (innermost bot/ frame of each trace):")
                for line, (size, count) in _by_bot_line(snapshot)[:TOP]:
                    print(f"  {size / 2**20:7.2f} MiB {count:9d} blocks  {line}")
            first = first or snapshot
        if first is not None and len(self.taken) > 1:
            last = tracemalloc.Snapshot.load(str(self.taken[-1][1])).filter_traces(ignore)
            print(f"\ngrowth from {self.taken[0][0]} to {self.taken[-1][0]} senders (line):")
            for stat in last.compare_to(first, "lineno")[:TOP]:
                where = f"{_short(stat.traceback[0].filename)}:{stat.traceback[0].lineno}"
                print(f"  {stat.size_diff / 2**20:+7.2f} MiB {stat.count_diff:+9d} blocks  {where}")


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.removeprefix(str(ROOT) + "/")


def _by_bot_line(snapshot: tracemalloc.Snapshot) -> list[tuple[str, tuple[int, int]]]:
    """Each trace charged to the innermost frame in the bot's own package: who asked a library to allocate."""
    totals: dict[str, tuple[int, int]] = {}
    bot = str(ROOT / "bot") + "/"
    for trace in snapshot.traces:
        frames = [frame for frame in trace.traceback if frame.filename.startswith(bot)]
        line = f"{_short(frames[-1].filename)}:{frames[-1].lineno}" if frames else "(outside bot/)"
        size, count = totals.get(line, (0, 0))
        totals[line] = (size + trace.size, count + 1)
    return sorted(totals.items(), key=lambda item: -item[1][0])


async def run(options: argparse.Namespace) -> None:
    sandbox = Sandbox()
    await sandbox.start()
    for number in range(options.senders):  # ids as long as DingTalk's: every cache holds their real size
        sandbox.add_user(staff_id_of(number), union_id_of(number))
    state = tempfile.TemporaryDirectory(prefix="bench-memory-")
    env = {
        **os.environ,
        **sandbox.bot_env(),
        "BOT_API_QPS": "100000",
        "BOT_STATE_DIR": state.name,  # a fresh journal: an earlier run's entries are not this run's memory
        "LOG_LEVEL": "WARNING",
        **dict(pair.split("=", 1) for pair in options.env),
        "TRACEMALLOC_FRAMES": str(options.frames),
    }
    command = [str(ROOT / "bench" / "traced.py")] if options.tracemalloc else ["-m", "bot"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.PIPE if options.tracemalloc else None,
    )
    snapshots = Snapshots(process, state.name, options.frames) if options.tracemalloc else None
    await sandbox.wait_connected(timeout=30)
    replies = Replies(sandbox)
    started = time.monotonic()
    idle_mb = memory_mb(process.pid)[0]
    curve: list[tuple[int, float]] = []
    for number in range(1, options.senders + 1):
        while options.outstanding and number - 1 - replies.total >= options.outstanding:
            if not await replies.wait_beyond(number - 1 - options.outstanding, 30):
                print(f"stalled at {number} commands, {replies.total} replies", file=sys.stderr)
                break
        await sandbox.push(sandbox.chat("list", staff_id_of(number - 1)))
        if number % FLUSH_EVERY == 0:
            replies.flush()
        if number % options.every == 0 or number == options.senders:
            curve.append((number, memory_mb(process.pid)[0]))
            elapsed = time.monotonic() - started
            print(f"{number:,} senders: RSS {curve[-1][1]:.0f} MB ({elapsed:.0f} s)", file=sys.stderr, flush=True)
            if snapshots is not None:
                await snapshots.take(number)
    while await replies.wait_beyond(replies.total, options.settle):
        replies.flush()
    seconds = time.monotonic() - started
    rss, peak = memory_mb(process.pid)
    process.terminate()
    await process.wait()
    await sandbox.close()
    mode = f"paced, at most {options.outstanding} unanswered" if options.outstanding else "burst"
    print(f"machine: {machine()}")
    print(f"{options.senders} commands (`list`) from distinct senders, {mode}, {' '.join(options.env)}")
    print(
        f"replies: {replies.total} in {seconds:.0f} s; RSS idle {idle_mb:.0f} MB, end {rss:.0f} MB, peak {peak:.0f} MB"
        + (" (tracemalloc on: RSS inflated)" if snapshots else "")
    )
    print("senders  " + " ".join(f"{count:>7,}" for count, _ in curve))
    print("RSS MB   " + " ".join(f"{mb:>7.0f}" for _, mb in curve))
    if snapshots is not None:
        snapshots.report()
    state.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--senders", type=int, default=400_000, help="distinct senders, one command each")
    parser.add_argument("--every", type=int, default=50_000, help="senders between two points of the curve")
    parser.add_argument(
        "--outstanding", type=int, default=1000, help="most commands unanswered at once; 0 pushes all at once"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds without a reply before the run ends")
    parser.add_argument("--env", nargs="*", default=[], help="extra NAME=value settings for the bot")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the bot's allocations (slower, RSS inflated)")
    parser.add_argument("--frames", type=int, default=1, help="frames kept per allocation with --tracemalloc")
    asyncio.run(run(parser.parse_args()))
