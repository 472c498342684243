"""The real bot in the test's own event loop, as the demo runs it: its log lines kept as `python -m bot` prints them."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import tempfile

from bot.__main__ import SHUTDOWN_GRACE_SECONDS, App, VitalTaskEnded, mode  # the entry point's own App, wherever built
from bot.config import Config
from bot.logs import JsonFormatter
from tests.botprocess import LogLines

log = logging.getLogger("bot.main")
# Which bot's tasks a record was logged from: every task the bot creates inherits the context its runner started in.
_running: contextvars.ContextVar[int | None] = contextvars.ContextVar("running_bot", default=None)
_numbers = itertools.count(1)


class _Lines(logging.Handler):
    """Gives each record, formatted as the process would print it, to the bot whose task logged it; a record from no
    bot's task (the sandbox's server, the test itself) is no bot's output."""

    def __init__(self) -> None:
        super().__init__()
        self.bots: dict[int, BotInProcess] = {}

    def emit(self, record: logging.LogRecord) -> None:
        bot = self.bots.get(_running.get() or 0)
        if bot is not None and record.levelno >= bot.level:
            bot.lines.append(bot.formatter.format(record) + "\n")


_lines = _Lines()


class BotInProcess(LogLines):
    """`python -m bot` without the process: the same Config from the same environment, the same App, started, stopped
    and logged as `serve()` does, in this event loop; for what only a process shows, use BotProcess."""

    def __init__(self, env: dict[str, str], grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self.grace = grace
        self.env = {"BOT_STATE_DIR": tempfile.mkdtemp(prefix="bot-state-"), **env}
        self.config = Config.from_env(self.env)
        self.level = logging.getLevelName(self.config.log_level)
        self.formatter = JsonFormatter(
            [self.config.client_secret, self.config.oauth_client_secret, self.config.secret_key]
        )
        self.lines: list[str] = []
        self.app: App | None = None
        self._number = next(_numbers)
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[int] | None = None

    async def start(self) -> BotInProcess:
        _lines.bots[self._number] = self
        if _lines not in logging.getLogger().handlers:
            logging.getLogger().addHandler(_lines)
        logging.getLogger("bot").setLevel(logging.DEBUG)  # each bot keeps the records at or above its LOG_LEVEL
        context = contextvars.copy_context()
        context.run(_running.set, self._number)
        self._runner = asyncio.create_task(self._serve(), context=context)
        return self

    async def _serve(self) -> int:
        """As bot.__main__.serve, with stop() for the signals."""
        log.info("bot starting", extra={"fields": mode(self.config)})
        self.app = App(self.config)
        runner = asyncio.create_task(self.app.run())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        await self.app.shutdown(self.grace)
        try:
            await runner
        except VitalTaskEnded:
            return 1
        return 0

    async def wait(self, timeout: float = 30.0) -> int:
        """The exit code `python -m bot` would have ended with."""
        assert self._runner is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._runner), timeout)
        finally:
            if self._runner.done():
                _lines.bots.pop(self._number, None)

    async def stop(self) -> int:
        """As SIGTERM: commands in flight get the grace to finish, their cards sent; then the exit code."""
        self._stopping.set()
        return await self.wait()
