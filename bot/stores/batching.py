"""Writing in batches: what is queued while one batch is being written goes together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# Writes one batch: a result (or the exception it failed with) per item, in order.
WriteBatch = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    """One batch in flight at a time: the busier the caller, the more items share each write (one round trip, one
    commit). A batch that fails as a whole fails every item in it; a caller that stopped waiting is skipped."""

    def __init__(self, write: WriteBatch[Item, Result], *, gather_one_turn: bool = False) -> None:
        self._write = write
        # one more turn of the event loop before each batch lets every task that runs in it join the batch
        self._gather_one_turn = gather_one_turn
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # writes what submit_later queued if nothing else does

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue one item: it goes out with every item queued before the batch in flight was written."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start()
        return future

    def submit_later(self, item: Item, within: float) -> asyncio.Future[Result]:
        """Queue one item without a write of its own: it goes out with the next batch, or `within` seconds from now
        at the latest when no other item comes (a write that need not land before its caller goes on saves a
        commit and a hand-off to the database's thread)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(within, self._start)
        return future

    def flush(self) -> None:
        """Write what submit_later queued now (without waiting for it)."""
        if self._pending:
            self._start()

    async def drained(self, within: float | None = None) -> None:
        """Wait until every queued item was written (or failed), those queued by submit_later too; at most `within`
        seconds (the writing goes on)."""
        self.flush()
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=within)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is None and self._pending:
            self._writer = asyncio.create_task(self._write_all())

    async def _write_all(self) -> None:
        try:
            while self._pending:
                if self._gather_one_turn:
                    await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results: Sequence[Result | BaseException] = await self._write([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the whole batch failed: every item in it failed with it
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
