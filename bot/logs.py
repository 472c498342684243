"""Structured logging: one JSON object per line on stdout, with secrets redacted as a last line of defence."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable

import orjson


def _spellings(snake: str) -> tuple[str, ...]:
    """access_token, ACCESS_TOKEN, accessToken, AccessToken, access-token (DingTalk's x-acs-dingtalk-access-token)."""
    first, *rest = snake.split("_")
    camel = first + "".join(word.capitalize() for word in rest)
    return snake, snake.upper(), camel, camel[0].upper() + camel[1:], snake.replace("_", "-")


# a parameter's value, only where it is given one (`=`, `:`, JSON's `":"`): prose such as DingTalk's "ticket expired"
# or "无效的clientId或者clientSecret" is left as it was written. Each name in the spellings APIs, SDKs and settings
# use (snake, upper, camel, Pascal, kebab case), not in any case: "Ticket: gateway busy" stays readable.
_SECRET_NAMES = (
    *(
        spelling
        for snake in ("access_token", "refresh_token", "app_secret", "client_secret", "suite_secret", "suite_ticket")
        for spelling in _spellings(snake)
    ),
    "ticket",  # any ticket: jsapi_ticket, the Stream's ?ticket=
    "session",  # a sessionWebhook's ?session=
)
_SECRET_PARAMETERS = re.compile(rf"((?:{'|'.join(_SECRET_NAMES)})[\\\"']*\s*[=:]\s*[\\\"']*)[^&\s\\\"',}}]+")
# Each of the names, lowered, holds one of these: five substring searches in the lowered line instead of one per
# name tell whether a line can hold a secret parameter at all (tests/test_logs.py checks that every name has its hint).
_SECRET_HINTS = ("ccess", "secret", "ticket", "session", "refresh")
_MILLISECONDS = tuple(f".{milliseconds:03d}Z" for milliseconds in range(1000))  # a record's msecs: 0 to 999
MIN_REDACTED_CHARS = 8  # a shorter "secret" (a wrong one typed for a try) would cut words out of every line
# JSON leaves these readable but invisible or reordering (bidi, zero-width, line separators): a log line that echoes
# user text must show them as escapes.
_INVISIBLE = re.compile("[\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_QUIET_LIBRARIES = ("aiohttp", "httpx", "httpcore", "websockets", "dingtalk_stream", "asyncio")


class JsonFormatter(logging.Formatter):
    """Formats a record and its `fields` extra as one JSON line; known secrets never pass."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if len(secret) >= MIN_REDACTED_CHARS]
        self._clock = (0, _second(0))  # the last second formatted, and its text: one tuple, whole for any thread

    def format(self, record: logging.LogRecord) -> str:
        second, clock = int(record.created), self._clock
        if clock[0] != second:
            clock = self._clock = (second, _second(second))
        entry: dict[str, object] = {
            "time": clock[1] + _MILLISECONDS[int(record.msecs)],
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        if not line.isascii():  # every invisible character is outside ASCII: most lines need no search
            line = _INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", line)
        return self.redact(line)

    def redact(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "[redacted]")
        # the search tries its pattern at every character (3 % of a command's instructions, two lines each): only
        # where one of the names is there at all, which a plain substring search tells far sooner
        lowered = line.lower()
        for hint in _SECRET_HINTS:
            if hint in lowered:
                return _SECRET_PARAMETERS.sub(r"\1[redacted]", line)
        return line


def _second(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


class LineHandler(logging.Handler):
    """Writes each formatted record as one line straight to a file descriptor: one system call, no buffering, so a
    PaaS log drain sees every line at once, even when the process is killed."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def handle(self, record: logging.LogRecord) -> bool:
        """As logging.Handler.handle, without its lock: one os.write per line needs none (the lock cost more than
        the write)."""
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, (self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    # Records need no caller, thread or process details here; skipping them is logging's documented speed-up.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(sys.stdout.fileno())
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:  # they log URLs, which can carry tokens, tickets and webhook sessions
        logging.getLogger(name).setLevel(logging.WARNING)
