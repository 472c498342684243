"""BOT_STATE_DIR at rest: one process at a time (an flock on a lock file), the folder 0700 and its files 0600."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

LOCK_FILE = "bot.lock"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
PRIVATE_UMASK = 0o077  # SQLite creates its -wal and -shm files later, with the umask's say: nobody else reads them


class StateDirBusy(Exception):
    """Another live process holds the state folder (it would resume the entries that process is working on)."""


class SharedFolder(OSError):
    """BOT_STATE_DIR is a folder others write to: its mode is theirs, and they could plant files for the bot."""


class StateDir:
    """The claimed folder; the lock lasts as long as this process (the kernel drops it when the process dies)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        os.close(self._fd)


def claim(path: Path) -> StateDir:
    """Create the folder (0700), make what it holds private (0600), and lock it for this process.
    StateDirBusy when another process holds it; OSError when it cannot be made or locked."""
    os.umask(PRIVATE_UMASK)
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if os.stat(path).st_mode & (stat.S_ISVTX | stat.S_IWOTH):  # /tmp and its like: never made private, nor used
        raise SharedFolder(
            f"{path} is a folder every user can write to (such as /tmp): give the bot a folder of its own, e.g. "
            f"{path / 'calendar-bot'}"
        )
    os.chmod(path, FOLDER_MODE)  # a folder made by an older version, or by hand, with wider rights
    # never through a symbolic link: the lock file is truncated and written, whatever file it would point at
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StateDirBusy(holder or "unknown") from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    for entry in path.iterdir():
        mode = entry.lstat().st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) != FILE_MODE:
            os.chmod(entry, FILE_MODE)
    return StateDir(path, fd)
