"""The steady scenario of bench/run.py alone, several times: each time the floor bot, then the bot, each sent 1,000
`unsubscribe "<id>"` at 100/s with no platform latency; one line per run (a p99 of 1,000 varies from run to run on a
shared machine). Usage: python bench/steady.py [--runs N]"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run


async def main(runs: int) -> None:
    for number in range(1, runs + 1):
        floor = await run.measure("floor bot", run.floor_bot(), 1000, 0.0, rate=100.0)
        bot = await run.measure("bot", run.bot(), 1000, 0.0, rate=100.0)
        print(
            f"run {number}: floor bot p50 {floor.percentile(0.5):.1f} p99 {floor.percentile(0.99):.1f} ms | bot p50 "
            f"{bot.percentile(0.5):.1f} p95 {bot.percentile(0.95):.1f} p99 {bot.percentile(0.99):.1f} ms, "
            f"{bot.cpu_per_command:.2f} ms CPU a command",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    uvloop.install()
    asyncio.run(main(parser.parse_args().runs))
