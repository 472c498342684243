"""Telemetry: the `stats` figures (percentiles within 2 %, today starting over at midnight UTC) and the counters."""

from __future__ import annotations

from bot.models import Outcome
from bot.telemetry import Stats, Telemetry


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MIDNIGHT = 1_795_737_600.0  # 2026-11-27 00:00 UTC


def test_percentiles_outcomes_codes_and_retries() -> None:
    stats = Stats(lambda: {}, Clock(MIDNIGHT + 3600))
    for latency in range(1, 101):
        stats.record("unsubscribed", [""], float(latency), 0)
    stats.record("not_in_scope", ["permissionDenied", ""], 1000.0, 2)

    report = stats.report()["since_start"]

    assert report["commands"] == 101 and report["retries"] == 2
    assert report["outcomes"] == [("not_in_scope", 1), ("unsubscribed", 100)]
    assert report["codes"] == [("permissionDenied", 1)]
    assert 51 * 0.98 <= report["p50_ms"] <= 51 * 1.02
    assert 100 * 0.98 <= report["p99_ms"] <= 100 * 1.02


def test_today_starts_over_at_midnight_and_counts_outside_figures_from_then() -> None:
    clock = Clock(MIDNIGHT - 60)
    outside = {"duplicates": 3, "reconnects": 1, "api:calendars": 10, "api:accessToken": 1, "api:webhook": 4}
    stats = Stats(lambda: dict(outside), clock)
    stats.record("help", [""], 5.0, 1)
    clock.now = MIDNIGHT + 60
    outside.update({"duplicates": 5, "api:calendars": 12})
    stats.report()
    outside["api:calendars"] = 13
    stats.record("unsubscribed", [""], 7.0, 0)

    report = stats.report()

    assert report["day"] == "2026-11-27"
    assert report["since_start"]["commands"] == 2 and report["today"]["commands"] == 1
    assert report["today"]["retries"] == 0 and report["since_start"]["retries"] == 1
    assert report["since_start"]["duplicates"] == 5 and report["today"]["duplicates"] == 0
    assert report["since_start"]["api_calls"] == 18 and report["since_start"]["quota_calls"] == 13
    assert report["today"]["api_calls_by_api"] == [("calendars", 1)] and report["today"]["quota_calls"] == 1


def test_the_counters_count_each_handled_message_its_retries_and_its_failures() -> None:
    elsewhere = {"duplicates": 2, "reconnects": 1, "failed_connections": 4, "api:calendars": 3}
    telemetry = Telemetry(lambda: elsewhere, lambda: 5)

    telemetry.handled(Outcome.UNSUBSCRIBED, [""], 10.0, 1, undelivered=False)
    telemetry.handled(Outcome.INTERNAL_ERROR, [""], 10.0, 0, undelivered=False)
    telemetry.handled(Outcome.UNSUBSCRIBED, [""], 10.0, 2, undelivered=True)  # its card never arrived
    telemetry.counters["rate_limited"] += 1

    assert telemetry.snapshot() == {
        "handled": 3,
        "failed": 2,
        "retried": 3,
        "deduplicated": 2,
        "rate_limited": 1,
        "busy_refused": 0,
        "in_flight": 5,
        "reconnects": 1,
        "failed_connections": 4,
    }
    assert telemetry.stats.report()["since_start"]["commands"] == 3
