"""The compile job's actor: the owner of its journal, supervised under the runtime's ``compile``
supervisor (a Teleprompter is a GenServer managing the state of a long-running optimization).

It appends each step to ``journal.jsonl`` (fsynced) and keeps the steps in memory; when it crashes
(a full disk, a bug) its supervisor restarts it and it reads its state back from the file, so the
compile goes on where it was. The driving loop (scoring through Evaluate) runs in the caller's thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervision import GenServer

from ..jsonl import dumps_line


@dataclass(frozen=True)
class Append:
    entry: dict


@dataclass(frozen=True)
class Steps:
    """The journal's entries so far (after the header)."""


class JournalKeeper(GenServer):
    title_prefix = "dspex"

    def init(self, path: str) -> None:
        self.path = Path(path)
        self.entries: list[dict] = read_journal(self.path)
        self.actor_log.info("journal_opened", path=str(self.path), entries=len(self.entries))

    def handle_call(self, request: Any) -> Any:
        match request:
            case Append(entry=entry):
                if self.entries and self.entries[-1] == entry:  # a retry after our crash: written already
                    return len(self.entries)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(dumps_line(entry))
                    fh.flush()
                    os.fsync(fh.fileno())
                self.entries.append(entry)
                return len(self.entries)
            case Steps():
                return list(self.entries)
        return super().handle_call(request)


def read_journal(path: Path) -> list[dict]:
    """Every readable entry (a line torn by a kill is skipped: the step it recorded is redone)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


__all__ = ["JournalKeeper", "Append", "Steps", "read_journal"]
