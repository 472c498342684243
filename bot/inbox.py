"""Messages off the connection: repeats dropped, the rest handled by a fixed pool of workers in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.dedupe import RecentIds
from bot.models import Message

log = logging.getLogger("bot.inbox")


class Inbox:
    """Never blocks the WebSocket reader: accept() only queues; at most `workers` messages are handled at once.
    Repeats are dropped here by this process; across dynos, handle() drops those another dyno took."""

    def __init__(self, handle: Callable[[Message], Awaitable[None]], workers: int) -> None:
        self._handle = handle
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._handled = RecentIds()
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self.active = 0
        self.deduplicated = 0

    @property
    def in_flight(self) -> int:
        return self.active + self._queue.qsize()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    def accept(self, message: Message) -> None:
        """Queue a message (already ACKed); a msgId seen in the last ten minutes is dropped."""
        if not self._handled.claim(message.msg_id):
            self.deduplicated += 1
            log.info("duplicate message dropped", extra={"fields": {"msg_id": message.msg_id}})
            return
        self._queue.put_nowait(message)

    async def drain(self, seconds: float) -> int:
        """Finish everything accepted so far, then stop the workers; returns how many were left unfinished."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), seconds)
        unfinished = self.in_flight
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        return unfinished

    async def _work(self) -> None:
        while True:
            message = await self._queue.get()
            self.active += 1
            try:
                await self._handle(message)
            except Exception:  # handle() answers every failure itself; this only keeps the worker alive
                log.exception("message handling crashed", extra={"fields": {"msg_id": message.msg_id}})
            finally:
                self.active -= 1
                self._queue.task_done()
