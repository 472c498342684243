"""The one write-batching helper: what is queued while a batch is written goes out together in the next one."""

from __future__ import annotations

import asyncio

import pytest

from bot.stores.batching import Batcher


class Writer:
    """Writes batches only when the test lets it, and keeps what each batch held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.go = asyncio.Event()
        self.fail_next = False

    async def write(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        await self.go.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the connection failed")
        return [ValueError(str(item)) if item < 0 else item * 10 for item in batch]


async def test_items_queued_while_a_batch_is_written_go_together_in_the_next() -> None:
    writer = Writer()
    batcher = Batcher(writer.write)
    first = batcher.submit(1)
    await asyncio.sleep(0)  # the first batch is on its way
    rest = [batcher.submit(n) for n in (2, 3, 4)]
    writer.go.set()

    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert writer.batches == [[1], [2, 3, 4]]


async def test_a_batch_that_fails_fails_each_of_its_items_and_the_next_batch_is_written() -> None:
    writer = Writer()
    writer.fail_next = True
    batcher = Batcher(writer.write)
    failing = [batcher.submit(1), batcher.submit(-2)]
    writer.go.set()
    for future in failing:
        with pytest.raises(ConnectionError):
            await future

    assert await batcher.submit(5) == 50
    with pytest.raises(ValueError, match="-7"):  # an item's own failure is its alone
        await batcher.submit(-7)


async def test_a_caller_that_stopped_waiting_is_skipped_and_the_others_get_their_results() -> None:
    writer = Writer()
    batcher = Batcher(writer.write)
    gave_up, waiting = batcher.submit(1), batcher.submit(2)
    gave_up.cancel()
    writer.go.set()

    async with asyncio.timeout(5):  # a writer that tripped over the cancelled one would never answer
        assert await waiting == 20
    await batcher.drained()
    assert writer.batches == [[1, 2]]


async def test_gathering_one_turn_lets_the_tasks_of_that_turn_join_the_batch() -> None:
    writer = Writer()
    writer.go.set()
    batcher = Batcher(writer.write, gather_one_turn=True)

    async def submit(item: int) -> int:
        return await batcher.submit(item)

    first = batcher.submit(1)
    others = [asyncio.create_task(submit(n)) for n in (2, 3)]  # they run in the next turn of the loop

    assert await asyncio.gather(first, *others) == [10, 20, 30]
    assert writer.batches == [[1, 2, 3]]


async def test_an_item_queued_later_goes_out_with_the_next_batch_not_in_one_of_its_own() -> None:
    writer = Writer()
    writer.go.set()
    batcher = Batcher(writer.write)
    later = batcher.submit_later(1, within=60)
    await asyncio.sleep(0.05)
    assert writer.batches == []  # nothing else came: not written yet

    assert await batcher.submit(2) == 20
    assert later.result() == 10
    assert writer.batches == [[1, 2]]


async def test_an_item_queued_later_is_written_within_its_time_when_nothing_else_comes() -> None:
    writer = Writer()
    writer.go.set()
    batcher = Batcher(writer.write)
    async with asyncio.timeout(1):
        assert await batcher.submit_later(1, within=0.05) == 10
    assert writer.batches == [[1]]


async def test_draining_writes_the_items_queued_later_at_once() -> None:
    writer = Writer()
    writer.go.set()
    batcher = Batcher(writer.write)
    later = batcher.submit_later(1, within=60)
    async with asyncio.timeout(1):
        await batcher.drained()
    assert later.result() == 10
    assert writer.batches == [[1]]
