"""The speed guard (python bench/run.py --guard): the bot's CPU per command against the floor bot's, by quoted id and
typed, in one run; exits 1 when either ratio is more than TOLERANCE above the figure committed in bench/guard.json."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import run
from bot.sandbox.platform import Sandbox

GUARD_FILE = Path(__file__).resolve().with_name("guard.json")
TOLERANCE = 0.10  # a ratio more than 10 % above the committed one fails
FORMS = ("quoted", "typed")
SETTLE_SECONDS = 0.05  # a contender whose CPU grows by less than SETTLE_CPU in this long has finished its batch
SETTLE_CPU = 0.001
MAX_SETTLE_SECONDS = 2.0
POLL_SECONDS = 0.02  # how often a burst's replies are counted


@dataclass
class Samples:
    """CPU seconds per command of each batch, by contender and form, in the order measured."""

    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failed: int = 0

    def add(self, contender: str, form: str, per_command: float) -> None:
        self.cpu.setdefault((contender, form), []).append(per_command)

    def ratios(self, form: str, contender: str = "bot") -> list[float]:
        """Bot ÷ floor of each round: the two bursts of a round ran at the same time, under the same load."""
        pairs = zip(self.cpu[contender, form], self.cpu["floor", form], strict=True)
        return [bot / floor for bot, floor in pairs]


async def settled(contender: run.Contender) -> float:
    """The contender's CPU once it stopped spending any (a reply sent is not the end of a command's work: the
    journal and the log line come after it), so every batch is charged all of its own work."""
    deadline = time.monotonic() + MAX_SETTLE_SECONDS
    before = contender.cpu_seconds()
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_SECONDS)
        now = contender.cpu_seconds()
        if now - before < SETTLE_CPU:
            return now
        before = now
    return before


async def answered(sandbox: Sandbox, messages: list[dict[str, Any]], seconds: float) -> None:
    """Wait until every message got its reply; raises when one is not an Unsubscribed card (a broken bot is not a
    fast one) or none came for `seconds`."""
    hooks = [message["sessionWebhook"].removeprefix(sandbox.base_url) for message in messages]
    replies = sandbox.webhook_replies
    deadline = time.monotonic() + seconds
    while not all(hook in replies for hook in hooks):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(hook not in replies for hook in hooks)} of {len(hooks)} commands not answered")
        await asyncio.sleep(POLL_SECONDS)
    wrong = sum(b"Unsubscribed" not in replies[hook].body for hook in hooks)
    if wrong:
        raise RuntimeError(f"{wrong} of {len(hooks)} commands not answered 'Unsubscribed'")


async def burst(sandbox: Sandbox, messages: list[dict[str, Any]], socket: int) -> None:
    for message in messages:
        await sandbox.push(message, socket=socket)
    await answered(sandbox, messages, run.STALL_SECONDS)


async def bursts(
    sandbox: Sandbox, contenders: dict[str, run.Contender], form: str, size: int, prefix: str
) -> dict[str, float]:
    """CPU seconds per command of each contender, all sent a burst of `size` new senders' commands at the same
    time: whatever the rest of the machine does meanwhile, it does to each of them alike. Each is charged the CPU
    its process spent from before the burst until it went quiet after it."""
    sent = {name: run.seed(sandbox, size, f"{prefix}{name}", form) for name in contenders}
    before = {name: await settled(contender) for name, contender in contenders.items()}
    await asyncio.gather(*(burst(sandbox, sent[name], socket) for socket, name in enumerate(contenders)))
    return {name: (await settled(contender) - before[name]) / size for name, contender in contenders.items()}


async def measure(
    rounds: int, size: int, latency: float, contenders: dict[str, run.Contender] | None = None
) -> Samples:
    """The contenders (the bot and the floor bot) on one sandbox, each on its own connection; each round sends them
    a burst of each form of command at once, the forms in a shuffled order."""
    sandbox = Sandbox(latency=latency)
    await sandbox.start()
    contenders = contenders or {"bot": run.bot(), "floor": run.floor_bot()}
    samples = Samples()
    try:
        for number, contender in enumerate(contenders.values()):
            contender.env.update(sandbox.bot_env())
            await contender.start(sandbox, connected_before=number)  # the bot is connection 0, the floor 1
        for form in FORMS:  # first token, connections, imports: not measured
            await bursts(sandbox, contenders, form, run.WARM_UP, f"w{form}")
        for round_number in range(rounds):
            for form in random.sample(FORMS, len(FORMS)):
                spent = await bursts(sandbox, contenders, form, size, f"r{round_number}{form}")
                for name, per_command in spent.items():
                    samples.add(name, form, per_command)
    finally:
        for contender in contenders.values():
            await contender.stop()
        await sandbox.close()
    return samples


def committed() -> dict[str, float]:
    data = json.loads(GUARD_FILE.read_text())
    return {form: float(data[form]) for form in FORMS}


def report(samples: Samples, limits: dict[str, float]) -> tuple[list[str], bool]:
    lines = ["form   | bot ms/cmd (median, range)  | floor ms/cmd | ratio median (rounds)      | committed | verdict"]
    passed = True
    for form in FORMS:
        bot, floor, ratios = samples.cpu["bot", form], samples.cpu["floor", form], samples.ratios(form)
        ratio = statistics.median(ratios)
        limit = limits[form] * (1 + TOLERANCE)
        ok = ratio <= limit
        passed &= ok
        cells = [
            f"{form:6}",
            f"{statistics.median(bot) * 1000:.3f} ({min(bot) * 1000:.3f}–{max(bot) * 1000:.3f})".ljust(27),
            f"{statistics.median(floor) * 1000:.3f}".ljust(12),
            f"{ratio:.2f}× ({min(ratios):.2f}–{max(ratios):.2f})".ljust(26),
            f"{limits[form]:.2f}×".ljust(9),
            f"{'ok' if ok else 'FAILED'}: at most {limit:.2f}×",
        ]
        lines.append(" | ".join(cells))
    return lines, passed


def record(samples: Samples, note: str) -> None:
    """Commit the measured ratios as the new figures, with the reason (the only way they should change)."""
    data = {form: round(statistics.median(samples.ratios(form)), 2) for form in FORMS}
    data["date"] = datetime.date.today().isoformat()  # type: ignore[assignment]
    data["note"] = note  # type: ignore[assignment]
    GUARD_FILE.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


async def main(options: argparse.Namespace) -> int:
    started = time.monotonic()
    print(f"guard: {run.machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    samples = await measure(options.guard_rounds, options.guard_batch, options.latency / 1000)
    lines, passed = report(samples, committed())
    print("\n".join(lines))
    print(
        f"{options.guard_rounds} rounds of {options.guard_batch} commands per contender and form, distinct senders, "
        f"{options.latency:.0f} ms platform latency; {time.monotonic() - started:.0f} s; "
        f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if options.record:
        record(samples, options.record)
        print(f"recorded in {GUARD_FILE.name}: {options.record}")
        return 0
    if not passed:
        print("guard FAILED: the bot costs more CPU per command, against the floor bot, than the committed figure")
    return 0 if passed else 1
