"""Telemetry: this process's counters, the heartbeat line and the `stats` card's figures (since start and today)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.models import Outcome

log = logging.getLogger("bot.telemetry")
FAILED_OUTCOMES = frozenset({Outcome.INTERNAL_ERROR, Outcome.TEMPORARY_PROBLEM})
# Latencies are counted in buckets 2 % wide: percentiles within 2 %, memory bounded (a few hundred buckets) and
# one logarithm per message.
_BUCKET_GROWTH = math.log(1.02)
# Calls DingTalk does not count toward an organization's monthly OpenAPI quota (reference §10.5); the sessionWebhook
# is no OpenAPI call at all.
QUOTA_EXEMPT = frozenset({"accessToken", "user/get", "webhook"})


@dataclass(slots=True)
class Window:
    """What happened over one period: counts that only grow, and a latency histogram."""

    counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    latencies: Counter[int] = field(default_factory=Counter)

    def percentile(self, share: float) -> float:
        """The latency in ms that `share` of the commands took at most (0 before any)."""
        total = sum(self.latencies.values())
        if not total:
            return 0.0
        rank, seen = math.ceil(share * total), 0
        for bucket in sorted(self.latencies):
            seen += self.latencies[bucket]
            if seen >= rank:
                return round(math.exp((bucket + 1) * _BUCKET_GROWTH), 1)
        return 0.0  # not reached: the last bucket holds the last rank


class Stats:
    """Counters kept by this process. `outside` reads the counts other parts keep themselves (duplicates dropped,
    reconnects, DingTalk calls by API): "today" shows how much they grew since the day began (UTC)."""

    def __init__(self, outside: Callable[[], Mapping[str, int]], clock: Callable[[], float] = time.time) -> None:
        self._outside = outside
        self._clock = clock
        self.started_at = clock()
        self._since_start = Window()
        self._today = Window()
        self._day = _day(self.started_at)
        self._next_day_at = _next_day_at(self.started_at)
        self._at_day_start: Mapping[str, int] = {}

    def record(self, outcome: str, codes: list[str], latency_ms: float, retries: int) -> None:
        """One handled command."""
        self._roll_over()
        bucket = int(math.log(max(latency_ms, 1.0)) / _BUCKET_GROWTH)
        for window in (self._since_start, self._today):
            window.outcomes[outcome] += 1
            for code in codes:
                if code:
                    window.codes[code] += 1
            window.latencies[bucket] += 1
            window.counts["retries"] += retries

    def report(self) -> dict[str, Any]:
        """Both periods, as the stats card shows them."""
        self._roll_over()
        outside = dict(self._outside())
        today_outside = {name: count - self._at_day_start.get(name, 0) for name, count in outside.items()}
        return {
            "started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started_at)),
            "day": self._day,
            "since_start": _summary(self._since_start, outside),
            "today": _summary(self._today, today_outside),
        }

    def _roll_over(self) -> None:
        now = self._clock()
        if now < self._next_day_at:  # once per command: no date formatting until the day may have changed
            return
        day = _day(now)
        self._next_day_at = _next_day_at(now)
        if day != self._day:
            self._day, self._today, self._at_day_start = day, Window(), dict(self._outside())


class Telemetry:
    """The counts of this process (`counters`), with those other parts keep (`elsewhere`: duplicates, reconnects,
    failed connections, DingTalk calls by API) and the messages in flight: the heartbeat line, the last line at
    shutdown and the `stats` card all read them here."""

    def __init__(self, elsewhere: Callable[[], Mapping[str, int]], in_flight: Callable[[], int]) -> None:
        self.counters: Counter[str] = Counter()
        self.stats = Stats(elsewhere)
        self._elsewhere = elsewhere
        self._in_flight = in_flight

    def handled(self, outcome: str, codes: list[str], latency_ms: float, retries: int, *, undelivered: bool) -> None:
        """One message answered (or not: its card `undelivered`)."""
        self.stats.record(outcome, codes, latency_ms, retries)
        counters = self.counters
        counters["handled"] += 1
        counters["retried"] += retries
        counters["failed"] += outcome in FAILED_OUTCOMES or undelivered

    def snapshot(self) -> dict[str, int]:
        counters, elsewhere = self.counters, self._elsewhere()
        return {
            "handled": counters["handled"],
            "failed": counters["failed"],
            "retried": counters["retried"],
            "deduplicated": elsewhere["duplicates"],
            "rate_limited": counters["rate_limited"],
            "busy_refused": counters["busy_refused"],
            "in_flight": self._in_flight(),
            "reconnects": elsewhere["reconnects"],
            "failed_connections": elsewhere["failed_connections"],
        }

    async def beats(self, seconds: float) -> AsyncIterator[None]:
        """The heartbeat: the counters logged every `seconds`, for ever; yields after each line."""
        while True:
            await asyncio.sleep(seconds)
            log.info("heartbeat", extra={"fields": self.snapshot()})
            yield


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _next_day_at(epoch: float) -> float:
    """The next UTC midnight after `epoch`."""
    return (epoch // 86_400 + 1) * 86_400


def _summary(window: Window, outside: Mapping[str, int]) -> dict[str, Any]:
    api_calls = {name.removeprefix("api:"): count for name, count in outside.items() if name.startswith("api:")}
    return {
        "commands": sum(window.outcomes.values()),
        "outcomes": sorted(window.outcomes.items()),
        "codes": sorted(window.codes.items()),
        "p50_ms": window.percentile(0.5),
        "p99_ms": window.percentile(0.99),
        "retries": window.counts["retries"],
        "duplicates": outside.get("duplicates", 0),
        "reconnects": outside.get("reconnects", 0),
        "api_calls": sum(api_calls.values()),
        "quota_calls": sum(count for name, count in api_calls.items() if name not in QUOTA_EXEMPT),
        "api_calls_by_api": sorted((name, count) for name, count in api_calls.items() if count),
    }
