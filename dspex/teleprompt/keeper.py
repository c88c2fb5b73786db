"""The compile job's actor: the owner of its journal, supervised under the runtime's ``compile``
supervisor (a Teleprompter is a GenServer managing the state of a long-running optimization).

It appends each step to ``journal.jsonl`` (fsynced) and keeps the steps in memory; when it crashes
(a bug, a kill) its supervisor restarts it and it reads its state back from the file, so the compile
goes on where it was. A write the disk refuses (full, read-only) is answered as :class:`WriteFailed`, not
a crash: a restart would not free the disk, and the job stops with the best program so far. The driving
loop (scoring through Evaluate) runs in the caller's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervision import GenServer

from ..errors import JournalWriteError
from ..journal import JournalWriter, append_record, read_journal


@dataclass(frozen=True)
class Append:
    entry: dict


@dataclass(frozen=True)
class Steps:
    """The journal's entries so far (after the header)."""


@dataclass(frozen=True)
class WriteFailed:
    """The answer to an Append the disk refused (``errno``: ENOSPC when full); the step is not recorded."""

    path: str
    errno: int | None
    message: str


class JournalKeeper(GenServer):
    title_prefix = "dspex"

    def init(self, path: str) -> None:
        self.path = Path(path)
        self.entries: list[dict] = read_journal(self.path)
        if self.path.exists():
            JournalWriter(self.path).close()  # a line torn by a crash is cut off before anything is appended
        self.actor_log.info("journal_opened", path=str(self.path), entries=len(self.entries))

    def handle_call(self, request: Any) -> Any:
        match request:
            case Append(entry=entry):
                if self.entries and self.entries[-1] == entry:  # a retry after our crash: written already
                    return len(self.entries)
                try:
                    append_record(self.path, entry, fsync=True)  # opened each time: a restart reads the file
                except JournalWriteError as exc:
                    self.actor_log.error("journal_write_failed", path=str(self.path), error=str(exc))
                    return WriteFailed(str(self.path), exc.errno, str(exc))
                self.entries.append(entry)
                return len(self.entries)
            case Steps():
                return list(self.entries)
        return super().handle_call(request)


__all__ = ["JournalKeeper", "Append", "Steps", "WriteFailed", "read_journal"]
