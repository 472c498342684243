"""Entry point: `python -m bot` runs the worker from the environment; `python -m bot demo` runs the sandbox demo."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from urllib.parse import urlsplit

import uvloop

from bot import logs
from bot.app import App, VitalTaskEnded
from bot.config import Config, ConfigError

log = logging.getLogger("bot.main")
SHUTDOWN_GRACE_SECONDS = 20.0  # a dyno gets 30 s between SIGTERM and SIGKILL; with the sockets closed, exit within 25 s


async def serve(config: Config) -> int:
    """Run the bot until SIGTERM, SIGINT or SIGHUP (exit code 0), or until the watchdog finds it deaf (1)."""
    hosts = {"api_host": urlsplit(config.api_base).hostname, "oapi_host": urlsplit(config.oapi_base).hostname}
    log.info("bot starting", extra={"fields": {"client_id": config.client_id, **hosts}})
    app = App(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stopping.set)
    runner = asyncio.create_task(app.run())
    stop_signal = asyncio.create_task(stopping.wait())
    await asyncio.wait({runner, stop_signal}, return_when=asyncio.FIRST_COMPLETED)
    stop_signal.cancel()
    await app.shutdown(SHUTDOWN_GRACE_SECONDS)
    try:
        await runner
    except VitalTaskEnded:
        return 1
    return 0


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
    return uvloop.run(serve(config))  # libuv's loop: less CPU per socket event than asyncio's own


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
