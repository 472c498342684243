"""Peak memory of the real `python -m bot` after commands from many distinct senders, against the loopback sandbox.
Paced: at most --outstanding commands unanswered at once, so every one is handled and every cache fills. Burst: all
pushed as fast as the socket takes them, so the inbox overflows. Usage: python bench/memory.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import machine  # noqa: E402
from bot.sandbox import Sandbox  # noqa: E402

FLUSH_EVERY = 5_000  # forget what the sandbox recorded this often: the bench process should not grow with the run


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

    async def wait_beyond(self, count: int, seconds: float) -> bool:
        try:
            await self.sandbox.wait_for(lambda: self.total > count, seconds)
        except TimeoutError:
            return False
        return True


async def run(options: argparse.Namespace) -> None:
    sandbox = Sandbox()
    await sandbox.start()
    for number in range(options.senders):
        sandbox.add_user(f"s{number}", f"u{number}")
    env = {
        **os.environ,
        **sandbox.bot_env(),
        "BOT_API_QPS": "100000",
        "LOG_LEVEL": "WARNING",
        **dict(pair.split("=", 1) for pair in options.env),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    await sandbox.wait_connected(timeout=30)
    replies = Replies(sandbox)
    started = time.monotonic()
    idle_mb = memory_mb(process.pid)[0]
    samples: list[float] = []
    for number in range(options.senders):
        while options.outstanding and number - replies.total >= options.outstanding:
            if not await replies.wait_beyond(number - options.outstanding, 30):
                print(f"stalled at {number} commands, {replies.total} replies", file=sys.stderr)
                break
        await sandbox.push(sandbox.chat("list", f"s{number}"))
        if number % FLUSH_EVERY == 0:
            replies.flush()
            samples.append(memory_mb(process.pid)[0])
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
    )
    print(f"RSS every {FLUSH_EVERY} commands (MB): {' '.join(f'{mb:.0f}' for mb in samples)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--senders", type=int, default=200_000, help="distinct senders, one command each")
    parser.add_argument(
        "--outstanding", type=int, default=1000, help="most commands unanswered at once; 0 pushes all at once"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds without a reply before the run ends")
    parser.add_argument("--env", nargs="*", default=[], help="extra NAME=value settings for the bot")
    asyncio.run(run(parser.parse_args()))
