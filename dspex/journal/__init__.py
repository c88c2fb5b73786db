"""Journals: the JSON Lines files a run appends to as it goes and reads back to resume (Evaluate's rows, a
compile's steps), the one format they share, and the lock that keeps one run at a time on each. Evaluate,
every optimizer and the dashboard read and write them through here and nowhere else.

The format (as optuna's JournalStorage: an enum of operations, old logs kept readable)::

    {"kind": "header", "format": 2, "journal": "compile", "optimizer": ..., "seed": ..., "fingerprint": {...}}
    {"kind": "bootstrap", "tag": ..., "index": ..., ...}      then one line per entry

The first line is a :class:`Header` naming the journal's type (:class:`JournalType`: an evaluation's rows
or a compile's steps) and its ``format``; every later line is an :class:`Entry` of one :class:`EntryKind`,
whose fields are declared in :mod:`.format` beside :data:`FORMAT`. A journal of a newer format is neither
read nor appended to: :class:`~dspex.errors.JournalTooNew` says to upgrade. Format 1 (the release before
the version: no ``format`` in a compile's header; no header and no ``kind`` in an evaluation's rows)
still reads, and a run resumed from one goes on appending to it.

Reading (:func:`read`, :mod:`.files`) goes by bytes, a line at a time. The last line may be torn (a kill -9
or a full disk in the middle of a write, possibly inside a multi-byte character): it is skipped, and the
step it recorded is redone. Any other line that is not a JSON object of a known kind with its fields is
damage, not a crash: :class:`~dspex.errors.JournalCorrupt` names the file and the line.

Writing (:class:`JournalWriter` held open for a run's rows; :func:`append`, which opens the file for each
of a compile's steps) appends whole lines: a write that fails (``ENOSPC``, ``EDQUOT``, ``EFBIG``, a
read-only file) is cut back to the last whole line and raised as :class:`~dspex.errors.JournalWriteError`;
before the first append a torn tail left by a crash is cut off, so it never ends up mid-file. The fsync
policy (a compile's steps: each flushed to disk; rows: one ``write`` each, no flush) is
:meth:`JournalWriter.append`'s.

:class:`RunLock` (:mod:`.lock`) is an OS file lock (``flock``) on a file beside the journal, held for the
run's life, with the holder's pid and host written in it: a second run on the same journal or run
directory is refused with :class:`~dspex.errors.JournalLocked`; a lock whose process died is free.
"""

from .files import Journal, JournalWriter, append, read
from .format import (FORMAT, BootstrapBatch, BootstrapTrace, CoproProposal, CoproScore, DataSummary, Entry, EntryKind, FullScore,
                     Header, InstructionProposal, JournalType, PoolCandidate, ProposalOutcome, Reflection, Row,
                     ScoredCandidate, SimbaBatch, SimbaFinal, SimbaProposal, SimbaScore, SimbaTrajectory, Step, Trial,
                     RuleInduction, OptunaTrial)
from .lock import RunLock, lock_path

__all__ = ["FORMAT", "JournalType", "EntryKind", "Entry", "Header", "Row", "BootstrapTrace", "BootstrapBatch", "ScoredCandidate",
           "DataSummary", "InstructionProposal", "Trial", "FullScore", "Reflection", "ProposalOutcome", "PoolCandidate",
           "CoproProposal", "CoproScore", "SimbaBatch", "SimbaTrajectory", "SimbaProposal", "SimbaScore", "SimbaFinal",
           "RuleInduction", "OptunaTrial", "Step", "Journal", "read", "JournalWriter", "append", "RunLock", "lock_path"]
