"""How long one command may keep trying DingTalk, and how many attempts it made: a per-command context value."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from bot.dingtalk.errors import OutOfTime


@dataclass
class Budget:
    """A deadline counted from when handling starts. Time spent waiting for the bot's own rate-limit slots is given
    back, but only up to `seconds` more in all: a command ends at most 2 × `seconds` after it started."""

    seconds: float
    deadline: float = field(init=False)
    credit_left: float = field(init=False)
    attempts: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        self.credit_left = self.seconds

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def extend(self, seconds: float) -> None:
        """Time spent queueing in the bot's own limiter is not failure: give it back, as far as credit is left."""
        credited = min(max(seconds, 0.0), self.credit_left)
        self.credit_left -= credited
        self.deadline += credited

    def paced(self, slot: AbstractAsyncContextManager[float]) -> Paced:
        """Hold a rate-limit slot, waiting for it no longer than the budget could still give back; the wait is
        credited. Raises OutOfTime instead of waiting longer, so a command cannot keep a worker for minutes."""
        return Paced(self, slot)


class Paced:
    """Budget.paced's context manager: a class, and no timer when the slot is free at once (take_now), as it is for
    nearly every call; entered for every DingTalk call."""

    __slots__ = ("_budget", "_slot")

    def __init__(self, budget: Budget, slot: AbstractAsyncContextManager[float]) -> None:
        self._budget = budget
        self._slot = slot

    async def __aenter__(self) -> float:
        take_now: Callable[[], bool] | None = getattr(self._slot, "take_now", None)
        if take_now is not None and take_now():
            return 0.0
        budget = self._budget
        started = time.monotonic()
        try:
            async with asyncio.timeout(max(budget.remaining + budget.credit_left, 0.0)):
                waited = await self._slot.__aenter__()
        except TimeoutError:
            budget.extend(time.monotonic() - started)
            raise OutOfTime(waiting_for_slots=True) from None
        budget.extend(waited)
        return waited

    def __aexit__(self, *exc: Any) -> Awaitable[bool | None]:
        return self._slot.__aexit__(*exc)  # the slot's own, awaited by `async with`: no coroutine of its own around it


current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


class spending:  # lower case: used as the function it was, `with budget.spending(seconds) as work:`
    """Every DingTalk call inside this block shares one fresh budget. A class, not a generator-based context manager:
    entered twice per command (its work and its reply): 16 → 10 k instructions each, counted."""

    __slots__ = ("_budget", "_token")

    def __init__(self, seconds: float) -> None:
        self._budget = Budget(seconds)

    def __enter__(self) -> Budget:
        self._token = current.set(self._budget)
        return self._budget

    def __exit__(self, *exc: object) -> None:
        current.reset(self._token)


class keeping:  # lower case: used as the function it was, `with budget.keeping(share):`
    """Within this block the current budget ends early, keeping `share` of what is left for what comes after it
    (the fallback after a failing webhook or private send). A class, as spending is: entered for every reply."""

    __slots__ = ("_kept", "_share", "_spent")

    def __init__(self, share: float) -> None:
        self._share = share

    def __enter__(self) -> None:
        spent = self._spent = current.get()
        if spent is None:
            return
        self._kept = max(spent.remaining, 0.0) * self._share
        spent.deadline -= self._kept

    def __exit__(self, *exc: object) -> None:
        if self._spent is not None:
            self._spent.deadline += self._kept
