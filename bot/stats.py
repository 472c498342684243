"""The counters behind `stats`: commands by outcome, DingTalk errors by code, latency, since start and today."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
