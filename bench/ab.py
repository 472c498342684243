"""Steady-rate A/B: the bots of two (or more) checkouts on one sandbox at the same time, each on its own connection,
each sent the same rate of `unsubscribe "<id>"` from distinct senders; per round, each bot's p50/p99 delivery → reply
and CPU per command. The machine is shared: only bots measured at the same time compare.

    .venv/bin/python bench/ab.py /work/main . --names main mine --rounds 6 --floor
    --floor   the floor bot (bench/floor.py) at the same rate too: what the sandbox and the machine add
    --steps   each bot under bench/steps.py: where the time of a command goes, step by step, printed at the end
    --strace  `strace -c -f` of each bot during the rounds (its file in a temporary folder, named at the end)"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bench and sandbox drive
from bench import run, steps
from bot.sandbox.platform import Sandbox


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def main(options: argparse.Namespace) -> None:
    sandbox = Sandbox(latency=options.latency / 1000)
    await sandbox.start()
    names = list(options.names or [str(number) for number in range(len(options.roots))])
    step_files: dict[str, Path] = {}
    contenders: list[run.Contender] = []
    for number, root in enumerate(options.roots):
        contender = run.bot()
        contender.cwd = root
        python = str(contender.cwd / ".venv/bin/python")
        contender.command = [python, "-m", "bot"]
        if options.steps:
            step_files[names[number]] = Path(tempfile.mkdtemp(prefix="bench-steps-")) / "steps.json"
            contender.command = [python, str(Path(__file__).with_name("steps.py"))]
            contender.env["BENCH_STEPS_OUT"] = str(step_files[names[number]])
        contender.env.update(sandbox.bot_env())
        await contender.start(sandbox, connected_before=number)
        contenders.append(contender)
    if options.floor:
        floor = run.floor_bot()
        floor.env.update(sandbox.bot_env())
        await floor.start(sandbox, connected_before=len(contenders))
        contenders.append(floor)
        names.append("floor")
    tracers: list[asyncio.subprocess.Process] = []
    strace_files = Path(tempfile.mkdtemp(prefix="bench-strace-"))
    try:
        for number in range(len(contenders)):
            await run.drive(sandbox, run.seed(sandbox, 20, f"w{number}"), 0, socket=number)
        if options.strace:
            for name, contender in zip(names, contenders, strict=True):
                pid = str(contender.processes[0].pid)
                output = str(strace_files / f"strace-{name}.txt")
                tracers.append(await asyncio.create_subprocess_exec("strace", "-c", "-f", "-p", pid, "-o", output))
            await asyncio.sleep(2)
        for round_number in range(options.rounds):
            await one_round(sandbox, contenders, names, round_number, options)
    finally:
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            await tracer.wait()
        for contender in contenders:
            await contender.stop()
        await sandbox.close()
    if tracers:
        print(f"strace -c of each bot: {strace_files}")
    for name, path in step_files.items():
        print(f"\n{name}: " + steps.summary(path))


async def one_round(
    sandbox: Sandbox, contenders: list[run.Contender], names: list[str], round_number: int, options: argparse.Namespace
) -> None:
    messages = [run.seed(sandbox, options.commands, f"r{round_number}b{n}") for n in range(len(contenders))]
    cpu_before = [contender.cpu_seconds() for contender in contenders]
    pushed: list[dict[str, float]] = [{} for _ in contenders]
    start = time.monotonic()
    for index in range(options.commands):
        await asyncio.sleep(max(0.0, start + index / options.rate - time.monotonic()))
        order = list(range(len(contenders)))
        if index % 2:  # neither bot always gets its message first
            order.reverse()
        for number in order:
            data = messages[number][index]
            pushed[number][data["sessionWebhook"].removeprefix(sandbox.base_url)] = time.monotonic()
            await sandbox.push(data, socket=number)
    replies = sandbox.webhook_replies
    await sandbox.wait_for(lambda: all(path in replies for sent in pushed for path in sent), 30)
    await asyncio.sleep(1.5)  # the CPU of what follows each reply (finish, audit, checkpoint) counted too
    line = []
    for number, sent in enumerate(pushed):
        latencies = [replies[path].received_at - at for path, at in sent.items()]
        cpu = (contenders[number].cpu_seconds() - cpu_before[number]) / len(latencies) * 1000
        line.append(
            f"{names[number]}: p50 {percentile(latencies, 0.5):.2f} p99 {percentile(latencies, 0.99):.2f} "
            f"max {max(latencies) * 1000:.1f} ms cpu {cpu:.2f} ms/cmd"
        )
    print(f"round {round_number + 1}: " + " | ".join(line), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="checkouts, each with its .venv")
    parser.add_argument("--names", nargs="+")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--commands", type=int, default=1000, help="per bot and round")
    parser.add_argument("--rate", type=float, default=100.0, help="commands per second, to each bot")
    parser.add_argument("--latency", type=float, default=0.0, help="ms per DingTalk call")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--strace", action="store_true")
    arguments = parser.parse_args()
    arguments.roots = [Path(root).resolve() for root in arguments.roots]
    uvloop.run(main(arguments))
