"""Commands under random kill -9 during bursts: how many ACKed commands get no card, or two, against the loopback
sandbox (one bot, its SQLite journal kept across kills). Usage: python bench/kills.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.sandbox.platform import Sandbox  # noqa: E402

SETTLE_SECONDS = 60.0  # after the last round: how long the last bot may take to answer what is left
QUIET_SECONDS = 5.0  # ... and how long without any new card before what is unanswered is taken as never answered


async def start_bot(
    sandbox: Sandbox, root: Path, state_dir: str, qps: int, log: Path | None = None
) -> asyncio.subprocess.Process:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("DINGTALK_", "BOT_"))},
        **sandbox.bot_env(),
        "BOT_STATE_DIR": state_dir,
        "BOT_API_QPS": str(qps),
        "BOT_RETRY_PAUSE_SCALE": "0.01",
        "BOT_STREAM_RETRY_SECONDS": "0.1",
        "LOG_LEVEL": "INFO" if log else "WARNING",
    }
    with log.open("ab") if log else Path(os.devnull).open("wb") as output:  # noqa: ASYNC230 - once per start
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=root, env=env, stdout=output, stderr=output
        )
    await sandbox.wait_connected(1, timeout=30)
    return process


async def kill(sandbox: Sandbox, process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()
    await sandbox.wait_for(lambda: sandbox.connections == 0, timeout=10)


async def settle(sandbox: Sandbox, acked: list[dict[str, Any]]) -> None:
    """Until every ACKed command has a card, or none came for QUIET_SECONDS (or SETTLE_SECONDS passed)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET_SECONDS:
        answered = sum(1 for data in acked if sandbox.replies_to(data))
        if answered == len(acked):
            break
        if answered != seen:
            seen, quiet_since = answered, time.monotonic()
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a second card would come right after the first


def seed(sandbox: Sandbox, number: int) -> dict[str, Any]:
    """One command of a fresh sender: unsubscribe or resubscribe (1:1), half of them with an expired sessionWebhook,
    so that their card goes through the rate-limited robot OpenAPI and waits for a send slot in a burst."""
    staff, union, calendar = f"k{number}", f"ku{number}", f"kc{number}"
    sandbox.add_user(staff, union)
    sandbox.add_calendar(calendar, f"Calendar {number}")
    verb = "resubscribe" if number % 3 == 2 else "unsubscribe"
    if verb == "unsubscribe":
        sandbox.subscribe(union, calendar)
    expires = -1.0 if number % 2 else 5400.0
    return sandbox.chat(f'{verb} "{calendar}"', staff, webhook_expires_in=expires)


async def run(args: argparse.Namespace) -> dict[str, int]:
    sandbox = Sandbox(latency=args.latency)
    await sandbox.start()
    state_dir = tempfile.mkdtemp(prefix="bench-kills-")
    rng = random.Random(args.seed)  # noqa: S311 - a benchmark's schedule, not cryptography
    pushed: list[tuple[str, dict[str, Any]]] = []
    started = time.monotonic()
    process = await start_bot(sandbox, args.root, state_dir, args.qps, args.log)
    try:
        per_round = args.commands // args.rounds
        for round_number in range(args.rounds):
            burst = [seed(sandbox, round_number * per_round + index) for index in range(per_round)]
            for data in burst:
                pushed.append((await sandbox.push(data), data))
            await asyncio.sleep(rng.uniform(0.0, args.kill_within))  # the kill lands anywhere in the burst's work
            await kill(sandbox, process)
            process = await start_bot(sandbox, args.root, state_dir, args.qps, args.log)
        acked = [data for frame, data in pushed if frame in sandbox.acks]
        await settle(sandbox, acked)
    finally:
        process.terminate()
        await process.wait()
        await sandbox.close()
    cards = [len(sandbox.replies_to(data)) for data in acked]
    if args.log:
        for data, count in zip(acked, cards, strict=True):
            if count != 1:
                webhook = data["sessionWebhookExpiredTime"] > time.time() * 1000
                print("cards:", count, data["msgId"], data["text"]["content"], "webhook" if webhook else "openapi")
    return {
        "pushed": len(pushed),
        "acked": len(acked),
        "no_card": cards.count(0),
        "two_or_more_cards": sum(1 for count in cards if count > 1),
        "seconds": round(time.monotonic() - started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1000, help="commands in all (default 1000)")
    parser.add_argument("--rounds", type=int, default=20, help="bursts, each ended by a kill -9 (default 20)")
    parser.add_argument("--kill-within", type=float, default=1.5, help="the kill comes 0..this many s into a burst")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every sandbox answer")
    parser.add_argument("--qps", type=int, default=20, help="the bot's BOT_API_QPS (robot sends wait for slots)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the kill schedule")
    parser.add_argument("--log", type=Path, help="append the bots' INFO logs to this file; list odd commands")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose bot to run (e.g. an older one)")
    args = parser.parse_args()
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
