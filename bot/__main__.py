"""Entry point: `python -m bot` runs the worker from the environment; `python -m bot demo` runs the sandbox demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

from bot import logs
from bot.config import VARIABLES, Config, ConfigError
from bot.stores.sqlite import statedir
from bot.wiring import App, VitalTaskEnded

log = logging.getLogger("bot.main")
SHUTDOWN_GRACE_SECONDS = 20.0  # a dyno gets 30 s between SIGTERM and SIGKILL; with the sockets closed, exit within 25 s
# The cycle collector's thresholds (Python's defaults: 700, 10, 10); see collect_less_often()
GC_YOUNG_OBJECTS = 10_000
GC_YOUNG_PASSES_PER_MIDDLE = 20
GC_MIDDLE_PASSES_PER_FULL = 100
PROXY_HELP = (
    "Outbound proxy: HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured for every DingTalk HTTP call and for the "
    "Stream WebSocket, as other tools honour them."
)
DESCRIPTION = """DingTalk calendar bot: employees write `unsubscribe <calendar>` to it and get a card back.

commands:
  (none)              run the worker: connect to DingTalk in Stream mode, configured by the environment
                      variables below (a missing or invalid one exits 2 and names it)
  demo                run the real bot against the built-in loopback DingTalk sandbox and play a scripted
                      conversation; needs no credentials and no network
  demo --interactive  the same, typing the messages yourself (a number presses that button of the last card)
  demo --user-tokens  the same with BOT_CALENDAR_TOKEN=user: connecting your own DingTalk account (OAuth)
  demo --isv          a third-party enterprise (ISV) app serving two organizations: the suite ticket, each
                      organization's own token, an organization that never authorized and one that removes the app
  demo --cards        interactive cards (BOT_CARD_TEMPLATE_ID): in the group itself, pressed by you and a colleague,
                      updated in place; with --interactive, type and press yourself"""


async def serve(config: Config) -> int:
    """Run the bot until SIGTERM, SIGINT or SIGHUP (exit code 0), or until the watchdog finds it deaf (1)."""
    log.info("bot starting", extra={"fields": mode(config)})
    app = App(config)
    collect_less_often()
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


def mode(config: Config) -> dict[str, object]:
    """What an admin checks first: which app, which DingTalk, which kind of app and token, where state is kept
    (never Redis's password), whether anyone may use the admin commands."""
    if config.redis_url:
        redis = urlsplit(config.redis_url)
        where = (
            f"{redis.scheme}://{redis.path}"
            if redis.scheme == "unix"
            else f"{redis.hostname or 'localhost'}:{redis.port or 6379}"
        )
        state = f"redis {where}"
    else:
        state = f"sqlite {os.path.abspath(config.state_dir)}"
    return {
        "client_id": config.client_id,
        "api_host": urlsplit(config.api_base).hostname,
        "oapi_host": urlsplit(config.oapi_base).hostname,
        "app_type": config.app_type,
        "calendar_token": config.calendar_token,
        "state": state,
        "admins": f"{len(config.admins)} configured" if config.admins else "none (stats and audit refused to all)",
    }


def parser() -> argparse.ArgumentParser:
    """The command line; its help lists every environment variable from the config's table."""
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        usage="%(prog)s [-h] [demo [--interactive | --isv | --user-tokens] [--cards]]",
        description=DESCRIPTION,
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", help=argparse.SUPPRESS)
    demo = commands.add_parser(
        "demo",
        prog="python -m bot demo",  # argparse would build it from the main usage, which names the demo already
        description="Run the real bot against the built-in loopback DingTalk sandbox.",
        usage="%(prog)s [-h] [--interactive | --isv | --user-tokens] [--cards]",  # one line, as argparse would wrap it
    )
    modes = demo.add_mutually_exclusive_group()
    modes.add_argument("--interactive", action="store_true", help="type the messages yourself")
    modes.add_argument("--isv", action="store_true", help="a third-party enterprise app serving two organizations")
    modes.add_argument(
        "--user-tokens", action="store_true", help="BOT_CALENDAR_TOKEN=user: connecting your own DingTalk account"
    )
    demo.add_argument(
        "--cards", action="store_true", help="BOT_CARD_TEMPLATE_ID set: interactive cards, pressed and updated in place"
    )
    return parser


def environment_help(width: int = 100) -> str:
    lines = ["environment variables (name = default):"]
    for variable in VARIABLES:
        lines.append(f"  {variable.name} = {variable.default}")
        lines += textwrap.wrap(
            variable.meaning, width, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False
        )
    lines += ["", *textwrap.wrap(PROXY_HELP, width)]
    return "\n".join(lines)


def collect_less_often() -> None:
    """The cycle collector's first pass every GC_YOUNG_OBJECTS new container objects instead of 700, and the code and
    data of startup frozen out of its full passes. A burst keeps hundreds of commands in flight: at 700, each pass
    found most of their objects alive, moved them to older generations and scanned them again there (measured in
    bench/README.md). The cyclic garbage left waiting is bounded by the threshold: a few MB."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS, GC_YOUNG_PASSES_PER_MIDDLE, GC_MIDDLE_PASSES_PER_FULL)


def main(argv: list[str]) -> int:
    arguments = parser().parse_args(argv)  # --help exits 0, unknown arguments exit 2 with the usage
    if arguments.command == "demo":
        from bot.sandbox import demo

        return demo.main(arguments.interactive, arguments.user_tokens, arguments.isv, arguments.cards)
    try:
        config = Config.from_env(os.environ)
    except ConfigError as error:  # every problem at once: an admin fixes them in one go
        for problem in error.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, secrets=[config.client_secret, config.oauth_client_secret, config.secret_key])
    state: statedir.StateDir | None = None
    if not config.redis_url:  # the journal and the database are files: one process per folder
        try:
            state = statedir.claim(Path(config.state_dir))
        except statedir.StateDirBusy as busy:
            fields = {"state_dir": config.state_dir, "holder_pid": str(busy)}
            log.error("another bot process is using BOT_STATE_DIR, not starting", extra={"fields": fields})
            return 1
        except OSError as error:
            problem = f"BOT_STATE_DIR: {config.state_dir} cannot be used ({type(error).__name__}: {error})"
            log.error("the bot's state cannot be kept, exiting", extra={"fields": {"problem": problem}})
            return 1
    try:
        return uvloop.run(serve(config))  # libuv's loop: less CPU per socket event than asyncio's own
    finally:
        if state is not None:
            state.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
