"""The intake journal: a message is written down before its ACK and crossed out once its card went out (the
contract; SQLite in sqlite/journal.py, a Redis Stream in redis/journal.py)."""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import orjson

from bot.models import Message

log = logging.getLogger("bot.journal")

CARD = "card"  # the progress step: a card may have gone out (true), or surely none did (false)
MAX_ATTEMPTS = 3  # handlings begun (each ended by the process dying) before an entry is parked
_MESSAGE_FIELDS = tuple(field.name for field in fields(Message))
_MESSAGE_TYPES = typing.get_type_hints(Message)  # what each field must hold when read back


@dataclass(slots=True)
class Entry:
    """An unfinished message found in the journal: how often its handling began before, and what it got done."""

    message: Message
    attempts: int
    progress: dict[str, Any]


class Journal(Protocol):
    """Where accepted messages wait until their card went out; SQLite on one machine, a Redis Stream across dynos."""

    async def open(self) -> list[Entry]:
        """The unfinished entries, oldest first; each counts as one more attempt from now on."""

    async def add(self, message: Message) -> bool:
        """Write the message down; False when its msgId is already there (unfinished, or finished recently)."""

    async def record(self, msg_id: str, key: str, value: Any) -> None:
        """Keep one step's result, so a resumed handling never repeats the step (kept and written later if the store
        does not answer now)."""

    async def record_held(self, msg_id: str, key: str, value: Any, seconds: float) -> bool:
        """Record a step within `seconds`, only while this process holds the message; False when it cannot be written
        in time (it is still kept and written later) or another process has taken the message over."""

    async def mark_card(self, msg_id: str, seconds: float) -> bool:
        """Record, within `seconds`, that the card is about to go out (the CARD step); False when this process must
        not send it: the step cannot be written, or another process has taken the message over."""

    async def finish(self, msg_id: str) -> None:
        """Its card went out: the entry is done (kept and retried until the store has it)."""

    def release(self, msg_id: str) -> None:
        """Not answered here: left for a later resumption (by this process or another)."""

    def resume_elsewhere(self, resume: Callable[[list[Entry]], None]) -> None:
        """Hand over entries that another process left behind while this one runs (only where they can be seen)."""

    async def close(self) -> None: ...


def dump_message(message: Message) -> bytes:
    return orjson.dumps({name: getattr(message, name) for name in _MESSAGE_FIELDS})


def load_message(raw: bytes | str) -> Message:
    """The message as dump_message wrote it; TypeError when a field has another type (another version wrote it)."""
    values = orjson.loads(raw)
    message = Message(**{name: values[name] for name in _MESSAGE_FIELDS if name in values})
    for name, kind in _MESSAGE_TYPES.items():
        if not isinstance(getattr(message, name), kind):
            raise TypeError(f"journal entry: {name} is not {kind}")
    return message


class Unwritable:
    """Says loudly once that the journal cannot be written and the bot serves on without durability, and once more
    when it can be written again."""

    def __init__(self) -> None:
        self.failing = False

    def failed(self, error: BaseException) -> None:
        if not self.failing:
            self.failing = True
            fields = {"error": type(error).__name__, "detail": str(error)[:200]}
            log.error(
                "journal cannot be written: serving without durability (a crash now loses the commands in flight)",
                extra={"fields": fields},
            )

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("journal writable again: accepted commands survive a crash")
