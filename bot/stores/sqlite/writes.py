"""A store's writes batched onto its database thread: one batch in flight at a time, one hand-off to the thread and
one back a batch (a burst's writes share each commit)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from bot.stores.batching import Batcher
from bot.stores.sqlite.database import DatabaseThread

Item = TypeVar("Item")
# on the database thread: a batch's items written (one transaction); what that gave
Apply = Callable[[list[Item]], Any]
# on the loop: from what `Apply` gave (or the exception it raised), each item's result or exception, in order
Settle = Callable[[list[Item], Any], Sequence[Any]]


class Writes(Generic[Item]):
    def __init__(self, thread: DatabaseThread, apply: Apply[Item], settle: Settle[Item]) -> None:
        self.thread = thread
        self._apply, self._settle = apply, settle
        self._batches: Batcher[Item, Any] = Batcher(self._write, gather_one_turn=True)

    def submit(self, item: Item) -> asyncio.Future[Any]:
        return self._batches.submit(item)

    def submit_later(self, item: Item, within: float) -> asyncio.Future[Any]:
        """Goes out with the next batch, or within `within` seconds (Batcher.submit_later)."""
        return self._batches.submit_later(item, within)

    async def drained(self) -> None:
        await self._batches.drained()

    async def _write(self, batch: list[Item]) -> list[Any]:
        outcome = await self.thread.run(functools.partial(_apply, self._apply, batch))
        return list(self._settle(batch, outcome))


def _apply(apply: Apply[Item], batch: list[Item]) -> Any:
    """On the database thread: the batch written, or the exception that stopped it (settled on the loop)."""
    try:
        return apply(batch)
    except Exception as error:
        return error
