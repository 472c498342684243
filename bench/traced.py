"""Run `python -m bot` with tracemalloc on; each line on stdin names a file to dump a snapshot to (bench/memory.py)."""

from __future__ import annotations

import os
import runpy
import sys
import threading
import tracemalloc

FRAMES = int(os.environ.get("TRACEMALLOC_FRAMES", "1"))  # more show who called, at several times the CPU


def dump_on_request() -> None:
    for line in sys.stdin:
        path = line.strip()
        tracemalloc.take_snapshot().dump(f"{path}.part")
        os.replace(f"{path}.part", path)  # the reader waits for the whole file


if __name__ == "__main__":
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the bot's package, not bench/
    tracemalloc.start(FRAMES)
    threading.Thread(target=dump_on_request, daemon=True).start()
    sys.argv = ["bot"]
    runpy.run_module("bot", run_name="__main__", alter_sys=True)
