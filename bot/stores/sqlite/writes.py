"""The writes made on every command, the journal's steps and the audit records, batched together: one hand-off to
the database thread and one back for both, each store's share one transaction on its own file."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.stores.batching import Batcher
from bot.stores.sqlite.database import DatabaseThread

# on the database thread: a store's items of one batch written (one transaction); what that gave
Apply = Callable[[list[Any]], Any]
# on the loop: from what `Apply` gave (or the exception it raised), each item's result or exception, in order
Settle = Callable[[list[Any], Any], Sequence[Any]]


@dataclass(eq=False, slots=True)
class Share:
    """One store's share of each batch."""

    apply: Apply
    settle: Settle


class Writes:
    """One batch in flight at a time for every store that takes part (a burst's writes share each commit, as with
    one Batcher each), and one call to the database thread a batch for all of them (a command's audit record waits for
    its card step, made right after it, and goes with it: one call instead of two). Within a batch the shares are
    written in the order they were made (build.py: the audit's before the journal's), so a card step never lands
    before the audit record of the change its card reports, although nobody waits for that record."""

    def __init__(self, thread: DatabaseThread) -> None:
        self.thread = thread
        self._shares: list[Share] = []
        self._batches: Batcher[tuple[Share, Any], Any] = Batcher(self._write, gather_one_turn=True)

    def share(self, apply: Apply, settle: Settle) -> Share:
        """A store's share, written after those made before it."""
        share = Share(apply, settle)
        self._shares.append(share)
        return share

    def submit(self, share: Share, item: Any) -> asyncio.Future[Any]:
        return self._batches.submit((share, item))

    def submit_later(self, share: Share, item: Any, within: float) -> asyncio.Future[Any]:
        """Goes out with the next batch, or within `within` seconds (Batcher.submit_later)."""
        return self._batches.submit_later((share, item), within)

    def flush(self) -> None:
        self._batches.flush()

    async def drained(self) -> None:
        await self._batches.drained()

    async def _write(self, batch: list[tuple[Share, Any]]) -> list[Any]:
        items: dict[Share, list[Any]] = {share: [] for share in self._shares}
        for share, item in batch:
            items[share].append(item)
        work = [(share, its) for share, its in items.items() if its]
        outcomes = await self.thread.run(functools.partial(_apply, work))
        settled = zip(work, outcomes, strict=True)
        results = {share: iter(share.settle(its, outcome)) for (share, its), outcome in settled}
        return [next(results[share]) for share, _ in batch]


def _apply(work: list[tuple[Share, list[Any]]]) -> list[Any]:
    """On the database thread: each share's items in turn; one share that fails does not stop the others."""
    outcomes: list[Any] = []
    for share, items in work:
        try:
            outcomes.append(share.apply(items))
        except Exception as error:
            outcomes.append(error)
    return outcomes
