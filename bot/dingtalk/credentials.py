"""What a call needs of whoever holds its token: the call made with a valid one (auth/ decides which, and keeps it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Credentials(Protocol):
    async def authorized(self, call: Callable[[str], Awaitable[T]]) -> T:
        """`call(token)` with a valid token; if DingTalk rejects the token, whatever these credentials do about it
        (a cached token: drop it and call once more with a new one)."""
        ...
