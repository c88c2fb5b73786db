"""Reading and appending journal files: torn last lines skipped, refused writes cut back, the fsync policy."""

from __future__ import annotations

import errno as errnos
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JournalCorrupt, JournalError, JournalTooNew, JournalWriteError
from ..jsonl import dumps_line
from .format import FORMAT, E, Entry, EntryKind, Header, JournalType, Row, Step, finite_number


# --- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Journal:
    """A journal as read: its header (None for a format-1 rows journal, or none at all) and entries."""

    path: Path
    header: Header | None
    entries: tuple

    @property
    def format(self) -> int:
        return self.header.format if self.header is not None else 1

    def of(self, cls: type[E]) -> list[E]:
        """The entries of that class, in journal order."""
        return [e for e in self.entries if isinstance(e, cls)]

    def best(self) -> float | None:
        """The best score on the whole valset a compile recorded so far (None: none yet)."""
        scores = [e.score if isinstance(e, Entry) else e.fields["score"] for e in self.entries
                  if e.kind.scores_a_program]
        return max(scores) if scores else None


def read(path: str | Path, *kinds: type[Entry], journal: JournalType | None = None) -> Journal:
    """The journal at ``path`` (no entries when there is none). Each entry is parsed by the class the
    reader names for its kind in ``kinds`` (rows and the header always are); others stay :class:`Step`,
    unless ``journal`` is given: then the header must be of that type and every entry one of ``kinds``.
    A torn last line is skipped; any other bad line is JournalCorrupt; a newer format is JournalTooNew."""
    p = Path(path)
    try:
        data = _read_regular(p)
    except FileNotFoundError:
        return Journal(p, None, ())
    classes: dict[EntryKind, type] = {EntryKind.HEADER: Header}
    if journal in (None, JournalType.EVALUATION):
        classes[EntryKind.ROW] = Row
    for cls in kinds:
        if classes.get(cls.kind, cls) is not cls:
            raise TypeError(f"{cls.__name__} and {classes[cls.kind].__name__} both read {cls.kind.value!r} entries")
        classes[cls.kind] = cls
    lines = [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    header, entries = None, []
    for position, (number, line) in enumerate(lines):
        try:
            value = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            if position == len(lines) - 1:
                break  # torn by a crash mid-write: the step it recorded is redone
            raise JournalCorrupt(str(p), number, _reason(exc)) from None
        if not isinstance(value, dict):
            raise JournalCorrupt(str(p), number, f"a JSON {type(value).__name__}, not an object")
        entry = _entry(p, number, position, value, classes, journal)
        if isinstance(entry, Header):
            header = entry
        else:
            entries.append(entry)
    return Journal(p, header, tuple(entries))


def _entry(path: Path, number: int, position: int, value: dict, classes: dict, journal: JournalType | None) -> Any:
    try:
        kind = EntryKind(value.get("kind", EntryKind.ROW.value))  # format 1 rows carry no kind
    except ValueError:
        raise JournalCorrupt(str(path), number, f"an entry of kind {value.get('kind')!r:.40}, which this release "
                             "does not know") from None
    if kind is EntryKind.HEADER:
        if position != 0:
            raise JournalCorrupt(str(path), number, "a header after the first line")
        version = value.get("format", 1)
        if finite_number(version) and version > FORMAT:  # checked first: a newer format may have changed the rest
            raise JournalTooNew(str(path), version, FORMAT)
    cls = classes.get(kind)
    if cls is None and journal is not None:
        raise JournalCorrupt(str(path), number, f"a {kind.value} entry, which a {journal.value} journal of this "
                             "run does not hold")
    try:
        entry = cls.from_json(value) if cls is not None else Step(kind, {k: v for k, v in value.items() if k != "kind"})
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalCorrupt(str(path), number, f"not a {kind.value} entry ({type(exc).__name__}: {exc})") from None
    if isinstance(entry, Header) and journal is not None and entry.journal != journal:
        raise JournalError(f"{path} is a {entry.journal} journal, not the {journal.value} journal this run reads: "
                           "pass the journal of this kind of run", str(path))
    return entry


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
    """Appends entries to one journal file, a whole line per entry. Open it while holding the journal's
    :class:`RunLock`. ``header``: written with the first entry when the file is empty (a new journal)."""

    def __init__(self, path: str | Path, fsync: bool = False, header: Header | None = None) -> None:
        self.path, self.fsync = Path(path), fsync
        try:  # a journal made read-only (or its folder removed) mid-run is a refused write like a full disk
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _write_error(self.path, exc) from exc
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)  # /dev/stdout, a FIFO: append as they are
        self.header: Header | None = None  # still to be written, with the first entry
        try:
            if self.regular:
                _refuse_newer(self.path)
                _mend_tail(self.path, self.fd)
            if header is not None and (not self.regular or os.fstat(self.fd).st_size == 0):
                self.header = header
        except OSError as exc:
            self.close()
            raise _write_error(self.path, exc) from exc
        except BaseException:
            self.close()
            raise

    def append(self, entry: Entry) -> None:
        """Write ``entry`` as one line; JournalWriteError (the file cut back to its last whole line) when
        the disk refuses it.

        The fsync policy: with ``fsync=True`` (a compile's steps) the line is on disk, not only in the OS's
        cache, before this returns, so not even a power loss makes a resumed compile pay again for a step
        it recorded; a compile records tens to hundreds of steps, each standing for LM calls, so the flush
        costs little. With ``fsync=False`` (Evaluate's rows) the line goes to the OS in one ``write``, with
        no buffer in this process: a kill -9 loses nothing written, an OS crash or power loss may lose the
        last rows, which a resumed run asks again (a flush per row would cost a disk sync per example at
        hundreds of examples a second)."""
        data = dumps_line(entry.to_json()).encode("utf-8")
        if self.header is not None:
            data = dumps_line(self.header.to_json()).encode("utf-8") + data
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
        self.header = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def append(path: str | Path, entry: Entry, fsync: bool = True) -> None:
    """Open the journal, append ``entry`` (:meth:`JournalWriter.append`), close: for a writer that appends
    now and then (a compile's steps), so each step goes to the file that is at ``path`` now."""
    with JournalWriter(path, fsync=fsync) as writer:
        writer.append(entry)


def _refuse_newer(path: Path) -> None:
    """JournalTooNew when the journal's header says a newer format (nothing is appended to it)."""
    reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(reader, 1 << 16, 0)
    finally:
        os.close(reader)
    first = head.split(b"\n", 1)[0]
    try:
        value = json.loads(first.decode("utf-8"))
    except ValueError:
        return  # empty, torn or damaged: the reader says which
    if isinstance(value, dict) and value.get("kind") == EntryKind.HEADER.value:
        version = value.get("format", 1)
        if finite_number(version) and version > FORMAT:
            raise JournalTooNew(str(path), version, FORMAT)


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


__all__ = ["Journal", "read", "JournalWriter", "append"]
