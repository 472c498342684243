"""How long one command may keep trying DingTalk, and how many attempts it made: a per-command context value."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Budget:
    """A deadline counted from when handling starts; waiting in the bot's own rate limiter does not use it up."""

    seconds: float
    deadline: float = field(init=False)
    attempts: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def extend(self, seconds: float) -> None:
        """Time spent queueing in the bot's own limiter is not failure: give it back."""
        self.deadline += seconds


current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


@contextmanager
def spending(seconds: float) -> Iterator[Budget]:
    """Every DingTalk call inside this block shares one fresh budget."""
    budget = Budget(seconds)
    token = current.set(budget)
    try:
        yield budget
    finally:
        current.reset(token)


@contextmanager
def keeping(share: float) -> Iterator[None]:
    """Within this block the current budget ends early, keeping `share` of what is left for what comes after it
    (the fallback after a failing webhook or private send)."""
    spent = current.get()
    if spent is None:
        yield
        return
    kept = max(spent.remaining, 0.0) * share
    spent.deadline -= kept
    try:
        yield
    finally:
        spent.deadline += kept
