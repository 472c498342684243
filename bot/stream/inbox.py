"""A bounded backlog served by a fixed pool of workers, round robin across senders, each sender's in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.models import Message

log = logging.getLogger("bot.inbox")

CAPACITY = 10_000  # waiting messages; each 1,024 characters of text count as one more
CHARS_PER_UNIT = 1_024
SENDER_BACKLOG = 100  # waiting messages of one sender; the rate limit would drop most of them anyway


def weight(message: Message) -> int:
    """What a waiting message costs of the inbox's capacity: one, and one more per 1,024 characters of its text,
    so the backlog's memory stays bounded whatever the texts hold."""
    return 1 + len(message.text or "") // CHARS_PER_UNIT


@dataclass(slots=True)
class _Sender:
    waiting: deque[Message] = field(default_factory=deque)
    active: int = 0
    turns: int = 0  # entries in the turn queue: never more than messages waiting


class Inbox:
    """Never blocks the WebSocket reader: accept() only queues or refuses; at most `workers` messages are handled at
    once, at most `per_sender` of one sender's. A sender gets a turn in the queue for each message it may start;
    a sender at its share gets its next turn only when one of its messages is done, behind everyone queued by then.
    So one sender cannot take the workers from everyone. Beyond `capacity` (or `sender_backlog` waiting for one
    sender) a message goes to `refuse` instead. Repeats never get here (the intake asks stream/repeats.py)."""

    def __init__(
        self,
        handle: Callable[[Message], Awaitable[None]],
        workers: int,
        refuse: Callable[[Message], None],
        *,
        per_sender: int = 1,
        capacity: int = CAPACITY,
        sender_backlog: int = SENDER_BACKLOG,
    ) -> None:
        self._handle = handle
        self._refuse = refuse
        self._per_sender = per_sender
        self._capacity = capacity
        self._sender_backlog = sender_backlog
        self._senders: dict[str, _Sender] = {}
        self._turns: asyncio.Queue[str] = asyncio.Queue()
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._load = 0
        self.waiting = 0
        self.active = 0

    @property
    def in_flight(self) -> int:
        return self.active + self.waiting

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    def accept(self, message: Message) -> None:
        """Queue a message (already ACKed); one beyond the capacity is refused."""
        key = message.sender_key
        sender = self._senders.get(key)
        cost = weight(message)
        if self._load + cost > self._capacity or (sender and len(sender.waiting) >= self._sender_backlog):
            self._refuse(message)
            return
        if sender is None:
            sender = self._senders[key] = _Sender()
        sender.waiting.append(message)
        self._load += cost
        self.waiting += 1
        self._give_turns(key, sender)

    async def drain(self, seconds: float) -> int:
        """Finish everything accepted so far, then stop the workers; returns how many were left unfinished."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._turns.join(), seconds)
        unfinished = self.in_flight
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        return unfinished

    def _give_turns(self, key: str, sender: _Sender) -> None:
        """Queue a turn for each waiting message the sender may start within its share; forget an idle sender."""
        while sender.turns < min(len(sender.waiting), self._per_sender - sender.active):
            sender.turns += 1
            self._turns.put_nowait(key)
        if not sender.waiting and not sender.active:
            del self._senders[key]

    async def _work(self) -> None:
        while True:
            key = await self._turns.get()
            sender = self._senders[key]
            sender.turns -= 1
            message = sender.waiting.popleft()
            self._load -= weight(message)
            self.waiting -= 1
            sender.active += 1
            self.active += 1
            try:
                await self._handle(message)
            except Exception:  # handle() answers every failure itself; this only keeps the worker alive
                log.exception("message handling crashed", extra={"fields": {"msg_id": message.msg_id}})
            finally:
                self.active -= 1
                sender.active -= 1
                self._give_turns(key, sender)  # before task_done: drain() must not see an empty queue in between
                self._turns.task_done()
