"""Journals: the JSON Lines files a run appends to as it goes (Evaluate's rows, a compile's steps) and
reads back to resume; and the lock that keeps one run at a time on each.

Reading goes by bytes, a line at a time. The last line may be torn (a kill -9 or a full disk in the
middle of a write, possibly inside a multi-byte character): it is skipped, and the step it recorded is
redone. Any other line that is not a JSON object (or that ``parse`` refuses) is damage, not a crash:
:class:`~dspex.errors.JournalCorrupt` names the file and the line.

Writing appends whole lines: a write that fails (``ENOSPC``, ``EDQUOT``, ``EFBIG``, a read-only file)
is cut back to the last whole line and raised as :class:`~dspex.errors.JournalWriteError`; before the
first append a torn tail left by a crash is cut off, so it never ends up in the middle of the file.

:class:`RunLock` is an OS file lock (``flock``) on a file beside the journal, held for the run's life,
with the holder's pid and host written in it: a second run on the same journal or run directory is
refused with :class:`~dspex.errors.JournalLocked`; a lock whose process died is free (the OS dropped it).
"""

from __future__ import annotations

import errno as errnos
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import JournalCorrupt, JournalError, JournalLocked, JournalWriteError
from .jsonl import dumps_line

T = TypeVar("T")


# --- reading ---------------------------------------------------------------------------------------

def read_journal(path: str | Path, parse: Callable[[dict], T] | None = None) -> list[T]:
    """Every record of the journal at ``path`` (``[]`` when there is none), each a dict or what
    ``parse(dict)`` makes of it. A torn last line is skipped; any other bad line is JournalCorrupt."""
    p = Path(path)
    try:
        data = _read_regular(p)
    except FileNotFoundError:
        return []
    lines = [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    records: list = []
    for position, (number, line) in enumerate(lines):
        last = position == len(lines) - 1
        try:
            text = line.decode("utf-8")
            value = json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            if last:
                break  # torn by a crash mid-write: the step it recorded is redone
            raise JournalCorrupt(str(p), number, _reason(exc)) from None
        if not isinstance(value, dict):
            raise JournalCorrupt(str(p), number, f"a JSON {type(value).__name__}, not an object")
        if parse is None:
            records.append(value)
            continue
        try:
            records.append(parse(value))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise JournalCorrupt(str(p), number, f"not a record of this journal ({type(exc).__name__}: {exc})"
                                 ) from None
    return records


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file (a FIFO or a device is refused: reading one may never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JournalError(f"{path} is not a regular file: a journal to read back must be one", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return f"invalid JSON ({exc})"


# --- writing ---------------------------------------------------------------------------------------

class JournalWriter:
    """Appends records to one journal file, a whole line per record (``fsync=True``: each on disk
    before ``append`` returns). Open it while holding the journal's :class:`RunLock`."""

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path, self.fsync = Path(path), fsync
        try:  # a journal made read-only (or its folder removed) mid-run is a refused write like a full disk
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _write_error(self.path, exc) from exc
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)  # /dev/stdout, a FIFO: append as they are
        if self.regular:
            try:
                _mend_tail(self.path, self.fd)
            except OSError as exc:
                os.close(self.fd)
                raise _write_error(self.path, exc) from exc

    def append(self, record: Any) -> None:
        """Write ``record`` as one line; JournalWriteError (the file cut back to its last whole line)
        when the disk refuses it."""
        data = dumps_line(record).encode("utf-8")
        size = os.fstat(self.fd).st_size if self.regular else 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            if self.fsync:
                os.fsync(self.fd)
        except OSError as exc:
            if self.regular:
                try:
                    os.ftruncate(self.fd, size)  # no torn line left behind to be appended after
                except OSError:
                    pass  # the file stays torn at its end: the next reader skips that line
            raise _write_error(self.path, exc) from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def append_record(path: str | Path, record: Any, fsync: bool = True) -> None:
    """Open, append one record, close (for a writer that appends now and then: a compile's steps)."""
    writer = JournalWriter(path, fsync=fsync)
    try:
        writer.append(record)
    finally:
        writer.close()


def _mend_tail(path: Path, fd: int) -> None:
    """Cut a torn last line (no newline, not JSON) off, or end a whole one with its missing newline
    (``fd``: the journal open for appending)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    start = max(0, size - (1 << 16))
    reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            tail = os.pread(reader, size - start, start)
            cut = tail.rfind(b"\n")
            if cut >= 0 or start == 0:
                break
            start = max(0, start - (1 << 20))  # a last line longer than 64 KiB: look further back
    finally:
        os.close(reader)
    keep = start + cut + 1 if cut >= 0 else 0
    rest = tail[cut + 1:] if cut >= 0 else tail
    if not rest.strip():
        return
    try:
        json.loads(rest.decode("utf-8"))
    except ValueError:
        os.ftruncate(fd, keep)  # torn: nothing readable to keep
        return
    os.write(fd, b"\n")


def _write_error(path: Path, exc: OSError) -> JournalWriteError:
    code = errnos.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    return JournalWriteError(f"cannot write the journal {path}: {exc.strerror or exc}" + (f" ({code})" if code else ""),
                             str(path), exc.errno)


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


__all__ = ["read_journal", "JournalWriter", "append_record", "RunLock", "lock_path"]
