"""The step a reply's request takes right before it is written, set per reply by whoever must record it first."""

from __future__ import annotations

import contextvars
from typing import Protocol


class BeforeSend(Protocol):
    async def sending(self) -> None:
        """Called as late as can be: the rate-limit slot is taken and the request is written next. Raises
        CardHeldBack to keep the request from being written at all."""
        ...

    async def not_sent(self) -> None:
        """DingTalk surely did not take the request (no connection, a server error, a throttle)."""
        ...


# the reply being sent in this task, if its step must be recorded (the stream's card step); None otherwise
current: contextvars.ContextVar[BeforeSend | None] = contextvars.ContextVar("before_send", default=None)
