"""The in-memory structures that grow with distinct senders and messages stay within bounds, in count and bytes."""

from __future__ import annotations

import tracemalloc

from bot.dedupe import RecentIds


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
