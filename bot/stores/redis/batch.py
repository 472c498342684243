"""Automatic pipelining: Redis commands queued while a batch is on the wire go out together in the next one."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis


class CommandBatcher:
    """One pipeline in flight at a time over the asyncio client: the busier the bot, the more commands share each
    round trip. A command alone costs about 120 µs of client CPU, one of 128 in flight 15 µs (bench/redis_ops.py)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    def send(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command: it goes out with every command queued before the previous batch was answered."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        return future

    async def aclose(self) -> None:
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        await self._client.aclose()

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send_batch(batch)
        finally:
            self._sender = None

    async def _send_batch(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipeline = self._client.pipeline(transaction=False)
        for command, _ in batch:
            pipeline.execute_command(*command)
        try:
            results = await pipeline.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the connection failed: every command in the batch failed with it
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
