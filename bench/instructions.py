"""Instructions per command of the real `python -m bot` (every thread), counted by valgrind's callgrind over a burst
or a paced run: the same figure on a busy machine and a quiet one. Usage: python bench/instructions.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402

START_SECONDS = 600.0  # the bot starts 20-50 times slower under valgrind
SETTLE_SECONDS = 3.0  # after the last reply: the journal's and the log's work for it comes after the card


async def count(root: Path, commands: int, form: str, rate: float, latency: float) -> tuple[int, int]:
    """Commands answered, and the instructions the bot's process executed from the first of them to the last."""
    sandbox = Sandbox(latency=latency)
    await sandbox.start()
    output = Path(tempfile.mkdtemp(prefix="bench-callgrind-")) / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={output}"]
    env = {
        **os.environ,
        **sandbox.bot_env(),
        "BOT_STATE_DIR": tempfile.mkdtemp(prefix="bench-state-"),
        "BOT_API_QPS": "100000",
        "BOT_USER_RATE": "100000",
        "LOG_LEVEL": "INFO",
        "BOT_COMMAND_TIMEOUT": "60",  # slowed down, a command must not run out of time
    }
    bot = await asyncio.create_subprocess_exec(
        *command, sys.executable, "-m", "bot", cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await sandbox.wait_connected(1, timeout=START_SECONDS)
        await run.drive(sandbox, run.seed(sandbox, run.WARM_UP, "warm", form), 0)
        messages = run.seed(sandbox, commands, "m", form)
        await control(bot.pid, "on")
        answered = len(await run.drive(sandbox, messages, rate))
        await asyncio.sleep(SETTLE_SECONDS)
        await control(bot.pid, "off")
    finally:
        bot.terminate()
        await bot.wait()
        await sandbox.close()
    annotate = await asyncio.create_subprocess_exec("callgrind_annotate", str(output), stdout=subprocess.PIPE)
    annotated, _ = await annotate.communicate()
    totals = next(line for line in annotated.decode().splitlines() if "PROGRAM TOTALS" in line)
    return answered, int(totals.split()[0].replace(",", ""))


async def control(pid: int, instrumentation: str) -> None:
    """Counting on (from here) or off (the counts so far are kept for the dump at exit)."""
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", "-i", instrumentation, str(pid), stdout=subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError(f"callgrind_control -i {instrumentation} failed")


async def main(options: argparse.Namespace) -> None:
    for number in range(options.repeat):
        for root in options.roots or [ROOT]:
            answered, instructions = await count(
                Path(root), options.commands, options.form, options.rate, options.latency / 1000
            )
            pace = f"{options.rate:g}/s" if options.rate else "a burst"
            print(
                f"{root}: {options.form} ids, {pace}, {answered} answered: "
                f"{instructions / max(answered, 1) / 1e6:.3f} M instructions per command (run {number + 1})",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("roots", nargs="*", help="checkouts to measure one after the other (default: this one)")
    parser.add_argument("--commands", type=int, default=200, help="commands counted (default 200)")
    parser.add_argument("--form", choices=("quoted", "typed"), default="quoted")
    parser.add_argument("--rate", type=float, default=0.0, help="commands per second (default 0: all at once)")
    parser.add_argument("--latency", type=float, default=50.0, help="platform latency per call in ms (default 50)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each checkout (default 1)")
    import uvloop

    uvloop.run(main(parser.parse_args()))
