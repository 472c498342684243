"""The in-memory structures that grow with distinct senders and messages stay within bounds, in count and bytes."""

from __future__ import annotations

import asyncio
import tracemalloc

from bot.stores.admission import MAX_TRACKED_USERS, UserRateLimiter
from bot.stores.dedupe import RecentIds
from bot.stores.limiter import MemoryLimiter


def _bytes_per_item(fill: object, count: int) -> float:
    """Memory still held after `fill()` (which adds `count` items) divided by `count`, measured by tracemalloc."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept is not None
    return (after - before) / count


def test_recent_ids_cost_the_same_few_bytes_per_id_however_long_the_ids_are() -> None:
    count = 20_000

    def fill() -> RecentIds:
        ids = RecentIds(ttl=600, capacity=2 * count)
        for number in range(count):
            ids.claim(f"msg{number:0200d}")  # 203 characters: a string kept would cost over 250 bytes
        return ids

    assert _bytes_per_item(fill, count) <= 40


def test_recent_ids_refuse_every_repeat_after_growing() -> None:
    ids = RecentIds(ttl=600, capacity=100_000)
    keys = [f"msgrK2{number}U+riw==" for number in range(30_000)]  # grows its table several times

    assert all(ids.claim(key) for key in keys)
    assert not any(ids.claim(key) for key in keys)
    assert all(key in ids for key in keys) and "msg-never-seen" not in ids
    assert len(ids) == len(keys)


def test_recent_ids_forget_the_older_generation_whole_at_capacity() -> None:
    ids = RecentIds(ttl=600, capacity=1000)
    for number in range(1500):
        assert ids.claim(f"m{number}")

    assert len(ids) == 1000
    assert "m499" not in ids  # the first generation (m0…m499) went whole
    assert "m500" in ids and "m1499" in ids
    assert not ids.claim("m1499") and ids.claim("m499")


def test_a_sender_with_one_command_in_the_window_costs_the_limiter_little() -> None:
    count = 20_000
    keys = [f"ding{number:032d}:0147{number:08d}8602" for number in range(count)]  # as long as DingTalk's ids

    def fill() -> UserRateLimiter:
        limiter = UserRateLimiter(rate=10)
        for key in keys:
            limiter.check(key)
        return limiter

    assert _bytes_per_item(fill, count) <= 150  # the key itself is not counted: the caller holds it


def test_the_limiter_still_counts_every_command_of_a_sender_with_one_kept_compactly() -> None:
    limiter = UserRateLimiter(rate=2, window=60)
    for number in range(50):
        assert limiter.check(f"other-{number}") == "allow"  # each kept as one time
    assert [limiter.check("s1") for _ in range(4)] == ["allow", "allow", "slow_down", "drop"]
    assert limiter.check("other-0") == "allow"
    assert limiter.check("other-0") == "slow_down"
    assert len(limiter) == 51


async def test_the_limiter_forgets_idle_windows_of_many_organizations_and_keeps_busy_ones() -> None:
    limiter = MemoryLimiter(5, window=0.01, sweep_from=4)
    async with limiter.slot("busy/unsubscribe"):
        for corp in range(3):
            async with limiter.slot(f"corp{corp}/unsubscribe"):
                pass
        await asyncio.sleep(0.02)
        async with limiter.slot("corp9/unsubscribe"):  # the fifth window: the idle ones go
            assert len(limiter) == 2


def test_the_user_rate_limiter_forgets_quiet_senders_and_holds_at_most_its_maximum() -> None:
    quiet = UserRateLimiter(rate=1, window=0.0)
    for number in range(1000):
        assert quiet.check(f"s{number}") == "allow"
    assert len(quiet) <= 1

    busy = UserRateLimiter(rate=10)
    for number in range(MAX_TRACKED_USERS + 100):
        busy.check(f"s{number}")
    assert len(busy) == MAX_TRACKED_USERS


def test_recent_ids_hold_at_most_their_capacity() -> None:
    ids = RecentIds(ttl=600, capacity=1000)
    for number in range(5000):
        assert ids.claim(f"m{number}")
    assert len(ids) <= 1000
    assert not ids.claim("m4999")


def test_recent_ids_claims_each_id_once_until_it_expires() -> None:
    ids = RecentIds(ttl=60, capacity=2)
    assert ids.claim("a") and not ids.claim("a") and ids.claim("b")
    assert ids.claim("c")  # over capacity: the oldest ("a") is forgotten
    assert ids.claim("a")
    expired = RecentIds(ttl=0)
    assert expired.claim("a") and expired.claim("a")
