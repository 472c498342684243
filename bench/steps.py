"""`python -m bot` with a timestamp at each step of a command's path (bench/ab.py --steps runs the bots under it).

Steps: the frame read, the journal's add (the ACK waits for it) and the ACK, the user lookup, the `changing` step,
the calendar call, the card step, the reply's send; and for every call to the database thread: queued → started
(the thread's wake-up) → done → back on the loop. Written as JSON to BENCH_STEPS_OUT at exit; `summary()` turns it
into a table. Not part of the product: it wraps a few of the bot's methods from outside."""

from __future__ import annotations

import atexit
import contextvars
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

now = time.perf_counter
STEPS: list[tuple[str, str, float]] = []  # (message key, step, time)
DATABASE_CALLS: list[list[float]] = []  # [queued, started, done, back on the loop]
PATH = ("user", "calendar", "send")  # the DingTalk calls of `unsubscribe "<id>"`, told apart by their URL


def instrument() -> None:
    from bot import pipeline
    from bot.dingtalk import client
    from bot.stores.sqlite import database, journal
    from bot.stream import transport

    current: contextvars.ContextVar[str] = contextvars.ContextVar("bench_message", default="")
    frames: dict[str, float] = {}

    def step(key: str, name: str) -> None:
        STEPS.append((key, name, now()))

    dispatch = transport.StreamClient._dispatch

    async def _dispatch(self: Any, socket: Any, kind: str, topic: str, message_id: str, *rest: Any) -> None:
        if kind == "CALLBACK":
            frames[message_id] = now()
        await dispatch(self, socket, kind, topic, message_id, *rest)

    accept = transport.StreamClient._accept_then_ack

    async def _accept_then_ack(self: Any, socket: Any, message: Any, message_id: str) -> None:
        STEPS.append((message.key, "frame", frames.pop(message_id, now())))
        await accept(self, socket, message, message_id)
        step(message.key, "acked")

    def timed(name: str) -> Callable[..., Any]:
        method = getattr(journal.SqliteJournal, name)

        async def wrapper(self: Any, first: Any, *rest: Any) -> Any:
            key = getattr(first, "key", first)
            label = f"record {rest[0]}" if name == "record" else name
            step(key, label + " >")
            result = await method(self, first, *rest)
            step(key, label + " <")
            return result

        return wrapper

    request = client.DingTalkClient._request

    async def _request(self: Any, method: str, url: Any, *rest: Any, **named: Any) -> Any:
        text = str(url)
        call = "user" if "user/get" in text else "calendar" if "calendar" in text else "send" if "robot" in text else ""
        key = current.get()
        if call:
            step(key, call + " >")
        result = await request(self, method, url, *rest, **named)
        if call:
            step(key, call + " <")
        return result

    handle = pipeline.Pipeline.handle

    async def _handle(self: Any, message: Any) -> None:
        current.set(message.key)
        step(message.key, "handle >")
        await handle(self, message)
        step(message.key, "handle <")

    run = database.Database.run

    async def _run(self: Any, work: Callable[[Any], Any]) -> Any:
        times = [now(), 0.0, 0.0, 0.0]

        def work_timed(connection: Any) -> Any:
            times[1] = now()
            try:
                return work(connection)
            finally:
                times[2] = now()

        result = await run(self, work_timed)
        times[3] = now()
        DATABASE_CALLS.append(times)
        return result

    transport.StreamClient._dispatch = _dispatch  # type: ignore[method-assign]
    transport.StreamClient._accept_then_ack = _accept_then_ack  # type: ignore[method-assign]
    for name in ("add", "record", "mark_card"):
        setattr(journal.SqliteJournal, name, timed(name))
    client.DingTalkClient._request = _request  # type: ignore[method-assign]
    pipeline.Pipeline.handle = _handle  # type: ignore[method-assign]
    database.Database.run = _run  # type: ignore[method-assign]


def _dump() -> None:
    Path(os.environ["BENCH_STEPS_OUT"]).write_text(json.dumps({"steps": STEPS, "database": DATABASE_CALLS}))


def _q(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def summary(path: Path) -> str:
    """Per step of the path, in order: p50 / p90 / p99 ms from the step before; each journal step split by whether
    a batch was already on the database thread when it was made (it then waits for that batch and its way back)."""
    data = json.loads(path.read_text())
    commands: dict[str, dict[str, float]] = defaultdict(dict)
    for key, name, at in data["steps"]:
        commands[key][name] = at
    done = [steps for steps in commands.values() if "frame" in steps and "send <" in steps]
    gaps: dict[str, list[float]] = defaultdict(list)
    for steps in done:
        ordered = sorted(steps.items(), key=lambda item: item[1])
        for (before, t0), (after, t1) in itertools.pairwise(ordered):
            gaps[f"{before} → {after}"].append((t1 - t0) * 1000)
    total = [(steps["send <"] - steps["frame"]) * 1000 for steps in done]
    lines = [
        f"{len(done)} commands, frame → reply sent: p50 {_q(total, 0.5):.2f} p90 {_q(total, 0.9):.2f} "
        f"p99 {_q(total, 0.99):.2f} ms"
    ]
    for gap, values in sorted(gaps.items(), key=lambda item: -len(item[1])):
        if len(values) >= len(done) // 2:
            lines.append(
                f"  {gap:36} p50 {_q(values, 0.5):6.3f} p90 {_q(values, 0.9):6.3f} p99 {_q(values, 0.99):7.3f}"
            )
    calls = data["database"]
    for name, start, end in (("queued → started", 0, 1), ("started → done", 1, 2), ("done → back", 2, 3)):
        values = [(call[end] - call[start]) * 1000 for call in calls]
        lines.append(
            f"  database {name:27} p50 {_q(values, 0.5):6.3f} p90 {_q(values, 0.9):6.3f} p99 {_q(values, 0.99):7.3f}"
        )
    for write in ("add", "record changing", "record card"):
        waited, free = [], []
        for steps in done:
            if write + " >" in steps:
                start, end = steps[write + " >"], steps[write + " <"]
                in_flight = any(call[0] < start < call[3] for call in calls)
                (waited if in_flight else free).append((end - start) * 1000)
        lines.append(
            f"  {write:17} thread free: {len(free)} p50 {_q(free, 0.5):.3f} p99 {_q(free, 0.99):.3f}; "
            f"a batch in flight: {len(waited)} p50 {_q(waited, 0.5):.3f} p99 {_q(waited, 0.99):.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # the checkout the bot runs from
    from bot import __main__ as entry

    instrument()
    atexit.register(_dump)
    sys.exit(entry.main(sys.argv[1:]))
