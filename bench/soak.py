"""A short soak of two dynos on a durable Redis: commands at a steady rate, random kill -9 of a dyno and Redis
restarts; counts commands answered twice and calendar changes asked twice. Usage: python bench/soak.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redisserver import RedisServer  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402

REPLY_WAIT_SECONDS = 20.0  # a command left by a killed dyno is answered after the claim time (3 s) by the other
SETTLE_SECONDS = 30.0  # after the load: time for the dynos to answer what is left (a take-over waits the claim time)


class Dyno:
    """One `python -m bot` with a fixed DYNO name, killed with SIGKILL and started again under the same name."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.process: asyncio.subprocess.Process | None = None
        self.kills = 0

    async def start(self) -> None:
        env = {**self.env, "DYNO": self.name, "BOT_STATE_DIR": tempfile.mkdtemp(prefix="bench-soak-")}
        log = self.env.get("SOAK_LOG")
        with Path(f"{log}.{self.name}" if log else os.devnull).open("ab") as output:  # noqa: ASYNC230 - per start
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=self.env.get("SOAK_ROOT", ROOT), env=env, stdout=output, stderr=output
            )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.kills += 1

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def chaos(dynos: list[Dyno], server: RedisServer, seconds: float, rng: random.Random) -> Counter[str]:
    """Every 3-8 s: kill -9 a dyno (it restarts at once, as Heroku restarts a crashed dyno) or restart Redis (down
    0.5-3 s: an outage longer than the claim time, too)."""
    done: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(3.0, 8.0))
        if rng.random() < 0.6:
            dyno = rng.choice(dynos)
            await dyno.kill()
            await dyno.start()
            done["dyno_kills"] += 1
        else:
            server.stop()
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await server.start()
            done["redis_restarts"] += 1
    return done


async def sender(sandbox: Sandbox, number: int, stop_at: float, pushed: list[tuple[str, dict[str, Any]]]) -> None:
    """One employee: unsubscribe or resubscribe their own calendar, whichever changes it, each command after the
    previous one's card (or after REPLY_WAIT_SECONDS without one), as a person pressing the card's button would.
    A change DingTalk then refuses as already made was asked twice: a command run again."""
    staff, union, calendar = f"soak{number}", f"soaku{number}", f"soakc{number}"
    sandbox.add_user(staff, union)
    sandbox.add_calendar(calendar, f"Calendar {number}")
    sandbox.subscribe(union, calendar)
    while time.monotonic() < stop_at:
        verb = "unsubscribe" if calendar in sandbox.subscriptions[union] else "resubscribe"
        data = sandbox.chat(f'{verb} "{calendar}"', staff)
        try:
            pushed.append((await sandbox.push(data), data))
            await sandbox.wait_reply(data, timeout=REPLY_WAIT_SECONDS)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)  # noqa: S311 - a benchmark's schedule, not cryptography
    server = await RedisServer(durable=True).start()
    sandbox = Sandbox(strict_subscriptions=True, api_latency={"webhook": 0.05, "unsubscribe": 0.05})
    await sandbox.start()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("DINGTALK_", "BOT_"))},
        **sandbox.bot_env(),
        "REDIS_URL": server.url,
        "BOT_JOURNAL_CLAIM_SECONDS": str(args.claim_seconds),
        "BOT_STREAM_RETRY_SECONDS": "0.2",
        "BOT_USER_RATE": "1000",  # each sender sends a command a second or so: not a flood to slow down
        "LOG_LEVEL": "INFO" if args.log else "WARNING",
        **({"SOAK_LOG": str(args.log)} if args.log else {}),
        "SOAK_ROOT": str(args.root),
    }
    dynos = [Dyno("worker.1", env), Dyno("worker.2", env)]
    pushed: list[tuple[str, dict[str, Any]]] = []  # (frame id, message): only ACKed ones were accepted
    try:
        for dyno in dynos:
            await dyno.start()
        await sandbox.wait_connected(2, timeout=30)
        stop_at = time.monotonic() + args.seconds
        # each sender waits for its card: the rate is senders / (card time), about args.senders per second here
        senders = [asyncio.create_task(sender(sandbox, number, stop_at, pushed)) for number in range(args.senders)]
        done = await chaos(dynos, server, args.seconds, rng)
        await asyncio.gather(*senders)
        await asyncio.sleep(SETTLE_SECONDS)  # take-overs of what a killed dyno left come within the claim time
    finally:
        for dyno in dynos:
            await dyno.stop()
        server.stop()
        await sandbox.close()
    cards = [len(sandbox.replies_to(data)) for frame, data in pushed if frame in sandbox.acks]
    if args.log:
        odd = [(data["msgId"], count) for frame, data in pushed if (count := len(sandbox.replies_to(data))) != 1]
        print("odd:", odd[:40])
    return {
        "commands": len(pushed),
        "acked": len(cards),
        "answered_twice": sum(1 for count in cards if count > 1),
        "changes_asked_twice": sandbox.repeated_changes,
        "no_card": cards.count(0),
        **done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=150.0, help="how long the load and the chaos last")
    parser.add_argument("--senders", type=int, default=20, help="employees sending one command after another")
    parser.add_argument("--claim-seconds", type=float, default=3.0, help="BOT_JOURNAL_CLAIM_SECONDS of the dynos")
    parser.add_argument("--log", type=Path, help="append the dynos' INFO logs to LOG.worker.N; list odd commands")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose bot to run (e.g. an older one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the chaos schedule")
    print(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
