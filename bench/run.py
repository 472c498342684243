"""Benchmark: a burst of `unsubscribe` commands through the real `python -m bot` and through the two SDK baselines,
against the loopback sandbox with a per-call latency; prints one table. Usage: python bench/run.py [--help]"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from bench.redisserver import RedisServer  # noqa: E402
from bot.sandbox.platform import Sandbox  # noqa: E402

WARM_UP = 20  # commands before measuring: process start, connection and the first token are not the burst
STALL_SECONDS = 30.0
STOP_SECONDS = 30.0  # the bot exits within 25 s of SIGTERM (bot/__main__.py): a process still there is a hang
DELAYED_CALLS = 2  # user/get and unsubscribe: the platform time before the reply arrives (a quoted id needs no list)
DUPLICATE_EVERY = 10  # with two dynos, every tenth message is delivered to both, as DingTalk may redeliver
LIMIT_WINDOW_SECONDS = 1.0  # DingTalk's limits count calls per second
ISV_ORGANIZATIONS = 100  # the ISV burst is spread over this many organizations, each with its own token


@dataclass
class Result:
    name: str
    commands: int
    answered: int
    errors: int
    seconds: float
    duplicates: int
    latencies: list[float]
    cpu_seconds: float
    peak_rss_mb: float
    platform_seconds: float
    offered_rate: float
    qps_limit: int
    throttled: int
    note: str = ""
    form: str = "quoted"  # how the commands name their calendar: "quoted" (an exact id) or "typed" (listed first)
    token_fetches: Counter[str] | None = None  # ISV: corpAccessToken calls per organization during the burst

    @property
    def cpu_per_command(self) -> float:
        return self.cpu_seconds / max(self.answered, 1) * 1000

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float, minus: float = 0.0) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return (ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] - minus) * 1000


class Contender:
    """One or more processes answering through the sandbox: the bot (`python -m bot`) or a baseline."""

    def __init__(self, command: list[str], env: dict[str, str], count: int = 1, cwd: Path = ROOT) -> None:
        self.command, self.env, self.count, self.cwd = command, env, count, cwd
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, sandbox: Sandbox, connected_before: int = 0) -> None:
        for number in range(connected_before, connected_before + self.count):
            process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=self.cwd,
                env={**os.environ, "BOT_STATE_DIR": tempfile.mkdtemp(prefix="bench-state-"), **self.env},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            self.processes.append(process)
            await sandbox.wait_connected(number + 1, timeout=30)

    async def profile(self) -> asyncio.subprocess.Process | None:
        """With BENCH_PROFILE=<file>, py-spy samples the first process during the burst (raw, flamegraph.pl's input)."""
        target = os.environ.get("BENCH_PROFILE")
        if not target or not self.processes:
            return None
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", target]
        spy_process = await asyncio.create_subprocess_exec(
            *command, "--pid", str(self.processes[0].pid), stdout=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)  # attached before the burst starts
        return spy_process

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(process.pid) for process in self.processes)

    def peak_rss_mb(self) -> float:
        peaks = []
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    async def stop(self, within: float = STOP_SECONDS) -> None:
        """SIGTERM every process; one still running `within` seconds later is killed and the run fails: a stop that
        hangs is reported, not waited for (a bot once hung in its stop here, fixed in b607738)."""
        for process in self.processes:
            process.terminate()
        hung = []
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), within)
            except TimeoutError:
                process.kill()
                await process.wait()
                hung.append(process.pid)
        if hung:
            raise RuntimeError(f"{self.command[-1]}: pid {hung} still running {within:.0f} s after SIGTERM, killed")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (every thread, those ended too), to the nanosecond: the kernel's CPU
    clock of another process (clock_getcpuclockid's id, CPUCLOCK_SCHED), not /proc's 10 ms ticks."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9


def seed(sandbox: Sandbox, count: int, prefix: str, form: str = "quoted") -> list[dict[str, Any]]:
    """`count` distinct senders, each subscribed to one calendar, each sending one unsubscribe: "quoted" is the form a
    card's button sends (an exact id: one calendar call), "typed" the id as typed (listed first: one call more)."""
    messages = []
    for number in range(count):
        staff, union, calendar = f"{prefix}s{number}", f"{prefix}u{number}", f"{prefix}c{number}"
        sandbox.add_user(staff, union)
        sandbox.add_calendar(calendar, f"Calendar {number}")
        sandbox.subscribe(union, calendar)
        text = f'unsubscribe "{calendar}"' if form == "quoted" else f"unsubscribe {calendar}"
        messages.append(sandbox.chat(text, staff))
    return messages


def seed_typed(sandbox: Sandbox, count: int, prefix: str) -> list[dict[str, Any]]:
    return seed(sandbox, count, prefix, "typed")


def seed_isv(sandbox: Sandbox, count: int, prefix: str) -> list[dict[str, Any]]:
    """As seed(), for an ISV app: the senders spread over ISV_ORGANIZATIONS organizations (the warm-up over one)."""
    messages = []
    organizations = ISV_ORGANIZATIONS if prefix != "warm" else 1
    for number in range(count):
        corp = f"ding{prefix}{number % organizations}"
        staff, union, calendar = f"s{number}", f"{prefix}u{number}", f"{prefix}c{number}"
        sandbox.authorized_corps.add(corp)
        sandbox.add_org_user(corp, staff, union)
        sandbox.add_calendar(calendar, f"Calendar {number}")
        sandbox.subscribe(union, calendar)
        messages.append(sandbox.chat(f'unsubscribe "{calendar}"', staff, chatbotCorpId=corp, senderCorpId=corp))
    return messages


async def push_suite_ticket(sandbox: Sandbox) -> None:
    await sandbox.wait_ack(await sandbox.push_suite_ticket())


async def drive(
    sandbox: Sandbox,
    messages: list[dict[str, Any]],
    rate: float,
    duplicate_every: int = 0,
    socket: int | None = None,
) -> list[float]:
    """Push the messages (all at once, or `rate` per second); returns each one's delivery→reply seconds. A message
    that cannot be delivered (the contender dropped its connection) or gets no reply counts as an error. With
    `duplicate_every`, every so many messages go to the first two connections both instead of to one at random;
    with `socket`, every message goes to that connection (the oldest is 0)."""
    pushed: dict[str, float] = {}
    replied_before = len(sandbox.webhook_replies)
    started = time.monotonic()
    for number, data in enumerate(messages):
        if rate:
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
        path = data["sessionWebhook"].removeprefix(sandbox.base_url)
        try:
            if duplicate_every and number % duplicate_every == 0:
                await sandbox.push(data, socket=0)
                await sandbox.push(data, socket=1)
            else:
                await sandbox.push(data, socket=socket)
        except (ConnectionError, aiohttp.ClientError, TimeoutError):
            continue
        pushed[path] = time.monotonic()
    expected = replied_before + len(pushed)
    while len(sandbox.webhook_replies) < expected:
        seen = len(sandbox.webhook_replies)
        try:  # give up once no reply has arrived for STALL_SECONDS
            await sandbox.wait_for(lambda seen=seen: len(sandbox.webhook_replies) > seen, STALL_SECONDS)
        except TimeoutError:
            break
    return [sandbox.webhook_replies[p].received_at - t for p, t in pushed.items() if p in sandbox.webhook_replies]


async def measure(
    name: str,
    contender: Contender,
    count: int,
    latency: float,
    *,
    qps_limit: int = 0,
    rate: float = 0.0,
    duplicate_every: int = 0,
    seeder: Callable[[Sandbox, int, str], list[dict[str, Any]]] = seed,
    prepare: Callable[[Sandbox], Awaitable[None]] | None = None,
) -> Result:
    sandbox = Sandbox(latency=latency)
    await sandbox.start()
    contender.env.update(sandbox.bot_env())
    contender.env["DINGTALK_OPENAPI_ENDPOINT"] = sandbox.base_url  # read by the SDK baselines
    await contender.start(sandbox)
    try:
        if prepare is not None:
            await prepare(sandbox)
        await drive(sandbox, seeder(sandbox, WARM_UP, "warm"), 0)
        fetched_before = len(sandbox.calls("corpAccessToken"))
        if qps_limit:
            # the bot counts each warm-up call until a second after its answer; the floor (commands / limit) is
            # for calls from empty windows, as the sandbox counts them (its limit is set only now)
            await asyncio.sleep(LIMIT_WINDOW_SECONDS + latency)
        sandbox.qps_limit = qps_limit
        messages = seeder(sandbox, count, "m")
        spy = await contender.profile()
        cpu_before, started = contender.cpu_seconds(), time.monotonic()
        latencies = await drive(sandbox, messages, rate, duplicate_every)
        seconds = time.monotonic() - started
        cpu = contender.cpu_seconds() - cpu_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await spy.wait()
        answered = [sandbox.webhook_replies.get(m["sessionWebhook"].removeprefix(sandbox.base_url)) for m in messages]
        ok = sum(1 for reply in answered if reply is not None and "Unsubscribed" in reply.body.decode())
        failed = error_kinds(reply for reply in answered if reply is None or "Unsubscribed" not in reply.body.decode())
        fetches = Counter(request.json()["authCorpId"] for request in sandbox.calls("corpAccessToken")[fetched_before:])
        return Result(
            name,
            count,
            len(latencies),
            count - ok,
            seconds,
            acted_twice(sandbox),
            latencies,
            cpu,
            contender.peak_rss_mb(),
            DELAYED_CALLS * latency,
            rate,
            qps_limit,
            sandbox.throttled,
            note=f"{name}: errors: {failed}" if failed else "",
            token_fetches=fetches if prepare is not None else None,
        )
    finally:
        await contender.stop()
        await sandbox.close()


async def median_burst(name: str, contender: Callable[[], Contender], options: argparse.Namespace, **kw: Any) -> Result:
    """A CPU-bound burst, run `--repeat` times: on this shared machine one run varies by ±15 % and more. Returns the
    run with the median CPU per command; its note gives the range of every run and their errors and repeats."""
    runs = [
        await measure(name, contender(), options.commands, options.latency / 1000, **kw) for _ in range(options.repeat)
    ]
    runs.sort(key=lambda run: run.cpu_per_command)
    median = runs[len(runs) // 2]
    if len(runs) > 1:
        rates = sorted(run.rate for run in runs)
        errors = "; ".join(run.note.removeprefix(f"{name}: errors: ") for run in runs if run.note)
        median.note = (
            f"{name}: the median of {len(runs)} runs by CPU; all runs: {rates[0]:.0f}–{rates[-1]:.0f} cmd/s, "
            f"{runs[0].cpu_per_command:.2f}–{runs[-1].cpu_per_command:.2f} ms CPU/cmd, "
            f"{sum(run.errors for run in runs)} errors{f' ({errors})' if errors else ''}, "
            f"{sum(run.duplicates for run in runs)} dup"
        )
    return median


def error_kinds(replies: Iterable[Any]) -> str:
    """What the commands counted as errors got instead of an "Unsubscribed" card: no card, or the card's title."""
    kinds: Counter[str] = Counter()
    for reply in replies:
        if reply is None:
            kinds["no card"] += 1
            continue
        try:
            kinds[repr(orjson.loads(reply.body)["markdown"]["title"])] += 1
        except (ValueError, KeyError, TypeError):
            kinds["a card that is not markdown"] += 1
    return ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())


def acted_twice(sandbox: Sandbox) -> int:
    """Messages answered twice, and calendars unsubscribed twice: every message has its own webhook and calendar."""
    repeated = 0
    for api in ("webhook", "unsubscribe"):
        paths = Counter(request.raw_path for request in sandbox.calls(api))
        repeated += sum(times - 1 for times in paths.values())
    return repeated


def bot(extra: dict[str, str] | None = None, count: int = 1) -> Contender:
    env = {"BOT_API_QPS": "100000", "BOT_USER_RATE": "100000", "LOG_LEVEL": "INFO", **(extra or {})}
    return Contender([sys.executable, "-m", "bot"], env, count)


def baseline(kind: str) -> Contender:
    return Contender([sys.executable, str(ROOT / "bench" / "baselines.py"), kind], {})


def floor_bot() -> Contender:
    """The floor bot (bench/floor.py): the same calls with raw aiohttp, no safety; every figure is a ratio to it."""
    return Contender([sys.executable, str(ROOT / "bench" / "floor.py")], {})


def table(results: list[Result], baselines: list[Result], floors: dict[str, Result]) -> str:
    """One row per scenario; each bot row also shows how many times the rate of each baseline it reached, and every
    burst its CPU per command as a multiple of the floor bot's for the same form of command, measured in this run."""
    header = ["scenario", "cmds", "ok", "err", "dup", "cmd/s"]
    header += [f"× {b.name.removeprefix('SDK ')}" for b in baselines]
    header += ["p50 ms", "p95 ms", "p99 ms", "bot-added p50/p99 ms", "CPU ms/cmd", "CPU × floor", "peak RSS MB"]
    rows = [header]
    for r in results:
        row = [r.name, str(r.commands), str(r.answered - r.errors), str(r.errors), str(r.duplicates), f"{r.rate:.1f}"]
        paced = bool(r.qps_limit or r.offered_rate)  # not a burst: the floor bot's burst is no comparison
        burst = r not in baselines and not paced
        row += [f"{r.rate / b.rate:.1f}" if burst and b.rate else "—" for b in baselines]
        row += [
            f"{r.percentile(0.5):.1f}",
            f"{r.percentile(0.95):.1f}",
            f"{r.percentile(0.99):.1f}",
            f"{r.percentile(0.5, r.platform_seconds):.1f} / {r.percentile(0.99, r.platform_seconds):.1f}",
            f"{r.cpu_per_command:.2f}",
            f"{r.cpu_per_command / floors[r.form].cpu_per_command:.2f}" if r.form in floors and not paced else "—",
            f"{r.peak_rss_mb:.0f}",
        ]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


async def main(options: argparse.Namespace) -> None:
    n, latency, scenarios = options.commands, options.latency / 1000, options.scenarios.split(",")
    print(f"machine: {machine()}")
    print(f"burst of {n} unsubscribe commands (distinct senders), platform latency {options.latency:.0f} ms per call")
    qps = options.qps_limit
    limited = {"BOT_API_QPS": str(qps)}  # the bot's default matches DingTalk's limit; here it matches the sandbox
    floors = {"quoted": await median_burst("floor bot (burst)", floor_bot, options)}
    results = [floors["quoted"], await median_burst("bot (burst)", bot, options)]
    if "typed" in scenarios:
        floors["typed"] = await median_burst("floor bot, typed id (burst)", floor_bot, options, seeder=seed_typed)
        floors["typed"].form = "typed"
        results += [floors["typed"], await median_burst("bot, typed id (burst)", bot, options, seeder=seed_typed)]
        results[-1].form = "typed"
    baselines: list[Result] = []
    if "isv" in scenarios:
        with tempfile.TemporaryDirectory(prefix="calbot-bench-") as state:  # the suite ticket's SQLite file
            isv = functools.partial(bot, {"DINGTALK_APP_TYPE": "isv", "BOT_STATE_DIR": state})
            name = f"ISV, {ISV_ORGANIZATIONS} orgs (burst)"
            results.append(await median_burst(name, isv, options, seeder=seed_isv, prepare=push_suite_ticket))
    if "baselines" in scenarios:
        for name, kind in (("SDK AsyncChatbotHandler", "threadpool"), ("SDK README ChatbotHandler", "readme")):
            baselines.append(await measure(name, baseline(kind), options.baseline_commands or n, latency))
        results += baselines
    if "steady" in scenarios:
        # the floor bot at the same rate: what the sandbox, the driver and the machine add to every latency
        results.append(await measure("floor bot steady 100/s, 0 ms", floor_bot(), n, 0.0, rate=100.0))
        results.append(await measure("bot steady 100/s, 0 ms", bot(), n, 0.0, rate=100.0))
    if "qps" in scenarios:
        results.append(await measure(f"bot, DingTalk limit {qps}/s", bot(limited), n, latency, qps_limit=qps))
    if "redis" in scenarios:
        server = await RedisServer().start()
        try:
            shared, twice = {"REDIS_URL": server.url}, DUPLICATE_EVERY
            two_dynos = functools.partial(bot, shared, 2)
            results.append(await median_burst("2 dynos (burst)", two_dynos, options, duplicate_every=twice))
            steady = await measure("2 dynos steady 100/s, 0 ms", two_dynos(), n, 0.0, rate=100.0, duplicate_every=twice)
            results.append(steady)
            if "qps" in scenarios:
                results.append(
                    await measure(f"2 dynos, limit {qps}/s", bot({**shared, **limited}, 2), n, latency, qps_limit=qps)
                )
        finally:
            server.stop()
    print(table(results, baselines, floors))
    for r in results:
        if r.note:
            print(r.note)
    for r in results:
        if r.token_fetches is not None:
            internal = results[1].cpu_per_command  # the internal-app burst (results[0] is the floor bot)
            print(
                f"{r.name}: {sum(r.token_fetches.values())} organization token fetches for {len(r.token_fetches)} "
                f"organizations, at most {max(r.token_fetches.values(), default=0)} per organization; CPU per command "
                f"{r.cpu_per_command / internal - 1:+.0%} against the internal-app burst"
            )
    for r in results:
        if r.qps_limit:
            floor = r.commands / r.qps_limit
            print(
                f"{r.name}: floor {floor:.0f} s, took {r.seconds:.1f} s, {r.throttled} calls throttled by the platform"
            )
    if "redis" in scenarios:
        print(
            f"2 dynos: every {DUPLICATE_EVERY}th message delivered to both; dup = messages or calendars acted on twice"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1000, help="commands per burst (default 1000)")
    parser.add_argument("--latency", type=float, default=50.0, help="platform latency per call in ms (default 50)")
    parser.add_argument(
        "--qps-limit", type=int, default=20, help="calls/s per API the sandbox allows in the qps scenarios (default 20)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each burst, the median shown (default 3)")
    parser.add_argument("--baseline-commands", type=int, default=0, help="commands for the baselines (default: same)")
    parser.add_argument(
        "--scenarios",
        default="typed,isv,baselines,steady,qps,redis",
        help="comma-separated extra scenarios: typed, isv, baselines, steady, qps, redis (default: all)",
    )
    parser.add_argument(
        "--guard",
        action="store_true",
        help="only the speed guard: CPU per command against the floor bot, quoted and typed; exit 1 when over "
        "bench/guard.json",
    )
    parser.add_argument(
        "--guard-rounds", type=int, default=9, help="guard: interleaved rounds, the median kept (default 9)"
    )
    parser.add_argument("--guard-batch", type=int, default=200, help="guard: commands per contender and form per round")
    parser.add_argument(
        "--record", default="", help="guard: write the measured ratios to bench/guard.json with this note"
    )
    options = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if options.guard:
        from bench import guard

        sys.exit(asyncio.run(guard.main(options)))
    asyncio.run(main(options))
