"""How long another user's command takes while one sender floods: the real `python -m bot` against the loopback
sandbox with DingTalk's per-API limit and a latency per call. Usage: python bench/flood.py [--help]"""

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
from bot.sandbox.platform import Sandbox  # noqa: E402

SETTLE_SECONDS = 3.0


def seed(sandbox: Sandbox, name: str, calendars: int) -> tuple[str, list[str]]:
    """A user subscribed to `calendars` calendars: their staff id and the calendar ids."""
    sandbox.add_user(name, f"{name}-union")
    ids = [f"{name}-cal{number}" for number in range(calendars)]
    for calendar_id in ids:
        sandbox.add_calendar(calendar_id, calendar_id)
        sandbox.subscribe(f"{name}-union", calendar_id)
    return name, ids


async def run(options: argparse.Namespace) -> None:
    sandbox = Sandbox(latency=options.latency / 1000)
    await sandbox.start()
    env = {**os.environ, **sandbox.bot_env(), "BOT_API_QPS": str(options.qps_limit), "LOG_LEVEL": "WARNING"}
    env["BOT_USER_RATE"] = str(options.user_rate)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await sandbox.wait_connected(timeout=30)
        warm, [warm_calendar] = seed(sandbox, "warm", 1)  # the token fetched before measuring
        await sandbox.push(warm_message := sandbox.chat(f"unsubscribe {warm_calendar}", warm))
        await sandbox.wait_reply(warm_message, timeout=30)
        sandbox.qps_limit = options.qps_limit
        flooder, calendars = seed(sandbox, "flooder", options.commands * options.names)
        flood = [
            sandbox.chat("unsubscribe " + ",".join(calendars[n * options.names : (n + 1) * options.names]), flooder)
            for n in range(options.commands)
        ]
        other, [other_calendar] = seed(sandbox, "other", 1)
        started = time.monotonic()
        for data in flood:
            await sandbox.push(data)
        pushed = time.monotonic()
        await sandbox.push(later := sandbox.chat(f"unsubscribe {other_calendar}", other))
        reply = await sandbox.wait_reply(later, timeout=300)
        other_seconds = reply.received_at - pushed
        while True:  # the flood is over once nothing has arrived at the platform for SETTLE_SECONDS
            seen = len(sandbox.requests)
            await asyncio.sleep(SETTLE_SECONDS)
            if len(sandbox.requests) == seen:
                break
        answered = [replies[0].received_at for data in flood if (replies := sandbox.replies_to(data))]
        flood_seconds = max(answered) - started
    finally:
        process.terminate()
        await process.wait()
        await sandbox.close()
    print(f"machine: {machine()}; code: {ROOT}")
    print(
        f"{options.commands} commands from one sender, {options.names} calendar(s) each, "
        f"BOT_USER_RATE={options.user_rate}, DingTalk limit {options.qps_limit}/s per API, "
        f"{options.latency:.0f} ms per call"
    )
    print(
        f"another user's command answered {other_seconds:.2f} s after it was sent; "
        f"{len(answered)} of the flood's commands answered, the last {flood_seconds:.1f} s after the first was sent"
    )
    body = reply.json()
    title = (body.get("markdown") or body["actionCard"])["title"]
    print(f"pushing the flood took {pushed - started:.2f} s; the other user's card: {title!r}")
    print(f"throttled by the platform: {sandbox.throttled}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=200, help="commands the flooding sender sends (default 200)")
    parser.add_argument("--names", type=int, default=1, help="calendars each of its commands names (default 1)")
    parser.add_argument("--user-rate", type=int, default=100_000, help="BOT_USER_RATE (default 100000: all admitted)")
    parser.add_argument("--qps-limit", type=int, default=20, help="calls/s per API, sandbox and bot (default 20)")
    parser.add_argument("--latency", type=float, default=100.0, help="platform latency per call in ms (default 100)")
    asyncio.run(run(parser.parse_args()))
