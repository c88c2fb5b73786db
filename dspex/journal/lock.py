"""One run at a time on a journal or a run directory: an OS file lock naming its holder."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import JournalLocked

# --- the lock --------------------------------------------------------------------------------------

def lock_path(journal: str | Path) -> Path:
    """Where a journal's lock lives: ``<journal>.lock`` beside it."""
    p = Path(journal)
    return p.with_name(p.name + ".lock")


class RunLock:
    """An exclusive ``flock`` on ``path`` for one run's life (``what`` names the guarded thing in the
    refusal). The file holds the holder's pid and host; it is removed on release."""

    def __init__(self, path: str | Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self.fd = -1

    def acquire(self) -> "RunLock":
        """Take the lock now or raise JournalLocked naming its (live) holder."""
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise self._refusal(holder) from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is None or not os.path.samestat(os.fstat(fd), current):
                os.close(fd)  # its holder released and removed it between our open and our flock: anew
                continue
            me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, me, 0)
            self.fd = fd
            return self
        raise JournalLocked(f"{self.what} keeps changing hands: another run is starting and stopping on it",
                            str(self.path))

    def _refusal(self, holder: dict) -> JournalLocked:
        pid, host = holder.get("pid"), holder.get("host")
        who = f"pid {pid} on {host}" if pid is not None else "a process that has not written its pid yet"
        if pid is not None and host == socket.gethostname() and not _alive(pid):
            who += " (exited; a process it started still holds the lock)"
        since = holder.get("since")
        when = (time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
                if isinstance(since, (int, float)) and 0 < since < 1e11 else "")
        return JournalLocked(f"{self.what} is in use by another run: {who}{when} holds {self.path}; wait for that "
                             "run to finish or stop it, or use another one", str(self.path), pid, host)

    def release(self) -> None:
        """Give the lock up (idempotent). The file goes first, while still held, so a run starting
        now never locks a file that is about to vanish."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)  # also for a child process that inherited the descriptor
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:  # a run that never reached its close still lets the next one in
        if self.fd >= 0:
            self.release()


def _holder(fd: int) -> dict:
    for _ in range(10):  # the holder writes its pid right after taking the lock
        try:
            value = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        time.sleep(0.02)
    return {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["RunLock", "lock_path"]
