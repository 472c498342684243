"""Run the real `python -m bot` process and collect what it prints."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class LogLines:
    """A bot's JSON log lines as `python -m bot` prints them, and waiting for one."""

    lines: list[str]

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def logs(self, event: str) -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in self.lines if line.startswith("{")]
        return [entry for entry in entries if entry.get("event") == event]

    async def wait_log(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first log entry for `event` with these field values, polling until the deadline."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for entry in self.logs(event):
                if all(entry.get(key) == value for key, value in fields.items()):
                    return entry
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no {event!r} log with {fields}; output:\n{self.output[-3000:]}")
            await asyncio.sleep(0.02)


class BotProcess(LogLines):
    """The bot as a child process with its own environment; stdout lines are kept for assertions."""

    def __init__(self, env: dict[str, str], open_files: int = 0) -> None:
        self.open_files = open_files  # the child's RLIMIT_NOFILE when set (as `prlimit --nofile` would)
        # a journal of its own unless the test gives one (to restart on it): no process resumes another test's work
        self.env = {"BOT_STATE_DIR": tempfile.mkdtemp(prefix="bot-state-"), **env}
        self.lines: list[str] = []
        self.stderr = ""
        self._process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> BotProcess:
        # A developer's own proxy must never capture sandbox traffic: *_PROXY variables only when a test sets them.
        clean = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DINGTALK_", "BOT_")) and not key.upper().endswith("_PROXY")
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=ROOT,
            env={**clean, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=self._limit if self.open_files else None,
        )
        self._readers = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]
        return self

    def _limit(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    async def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            self.lines.append(line.decode())

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        self.stderr = (await self._process.stderr.read()).decode()

    def exhaust_open_files(self) -> tuple[int, int]:
        """Lower the running process's soft RLIMIT_NOFILE (as `prlimit --pid` does) to its lowest free descriptor
        number: the descriptors it holds are kept, it can open no more. Returns the limits to give back."""
        assert self._process is not None
        held = {int(name) for name in os.listdir(f"/proc/{self._process.pid}/fd")}
        lowest_free = min(set(range(len(held) + 1)) - held)  # the kernel hands out the lowest free number
        limits = resource.prlimit(self._process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(self._process.pid, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
        return limits

    def restore_open_files(self, limits: tuple[int, int]) -> None:
        """Give the process its descriptors back (a limit exhaust_open_files returned)."""
        assert self._process is not None
        resource.prlimit(self._process.pid, resource.RLIMIT_NOFILE, limits)

    def peak_memory_mib(self) -> float:
        """The most resident memory the process has used so far (VmHWM), in MiB."""
        assert self._process is not None
        status = Path(f"/proc/{self._process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(kib) / 1024

    @property
    def output(self) -> str:
        return "".join(self.lines) + self.stderr

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self._process is not None
        self._process.send_signal(signum)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self._process is not None
        code = await asyncio.wait_for(self._process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> int:
        assert self._process is not None
        if self._process.returncode is None:
            self.signal(signal.SIGTERM)
        return await self.wait()
