"""Entry point: `python -m bot` runs the worker from the environment; `python -m bot demo` runs the sandbox demo."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import uvloop

from bot import logs
from bot.app import App
from bot.config import Config, ConfigError

SHUTDOWN_GRACE_SECONDS = 22.0  # a dyno gets 30 s between SIGTERM and SIGKILL; exit well within 25 s


async def serve(config: Config) -> None:
    app = App(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    runner = asyncio.create_task(app.run())
    await stopping.wait()
    await app.shutdown(SHUTDOWN_GRACE_SECONDS)
    await runner


def main(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:
        from bot import demo

        return demo.main(argv[1:])
    if argv:
        print("usage: python -m bot [demo]", file=sys.stderr)
        return 2
    try:
        config = Config.from_env(os.environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, secrets=[config.client_secret])
    uvloop.run(serve(config))  # libuv's loop: less CPU per socket event than asyncio's own
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
