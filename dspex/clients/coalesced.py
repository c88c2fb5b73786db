"""A process's traffic to a client actor in another process, coalesced: admissions asked for together,
success reports sent in batches (:class:`CoalescedChannel`, the lease channel of a pipeline that does not
run in the client actor's process: an evaluation worker, the user's process of a multiproc runtime).

There each admission and each report is a cross-process round trip. Threads that need a lease while
another thread's request is on its way queue up; when the answer comes, the next thread asks for all of
them at once (:class:`AdmitBatch`). The actor grants the first when its turn comes and the others only
if a lease is free that instant, so no lease is ever held without a thread waiting for it (nothing to
give back, nothing to leak). Success reports (one-way) are gathered for a few milliseconds and sent as
one :class:`ReportBatch` (``batcher.Batcher``); ``flush()`` sends what is pending at once (an evaluation
worker flushes before it hands in its rows, so the ledger has every call of a row before the row counts).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence

import structlog

from ..errors import LMError
from .batcher import Batcher
from .messages import Admit, AdmitBatch, CacheHit, Done, Lease, Leases, Release, Report, ReportBatch

log = structlog.get_logger("dspex")

MAX_BATCH = 16  # admissions asked for in one AdmitBatch
REPORT_EVERY = 0.005  # seconds a success report may wait for others


class ReportingChannel:
    """What every lease channel outside the client actor's process shares: success reports batched, a
    release or a cache hit cast, ``flush`` / ``close`` sending what is pending."""

    def __init__(self, link: Any) -> None:  # a pipeline.ClientLink (which imports this module)
        self.link = link
        self.reports = Batcher(self._send_reports, REPORT_EVERY, "dspex-reports")

    def succeeded(self, report: Report) -> None:
        self.reports.add(report)

    def release(self, lease: int, run: str | None) -> None:
        self.link.cast(Release(lease, run))

    def cache_hit(self, run: str | None) -> None:
        self.link.cast(CacheHit(run))

    def flush(self) -> None:
        self.reports.flush()

    def close(self) -> None:
        self.reports.close()

    def _send_reports(self, batch: list[Report]) -> None:
        try:
            self.link.cast(ReportBatch(tuple(batch)) if len(batch) > 1 else batch[0])
        except LMError as exc:  # the client actor is gone: its restart starts from the ledger
            log.warning("reports_lost", reports=len(batch), error=str(exc))


class CoalescedChannel(ReportingChannel):
    """The lease channel of a process other than the client actor's (module docstring); the same
    methods as ``pipeline.DirectChannel``, which it differs from in ``admit``, ``succeeded`` and ``flush``."""

    def __init__(self, link: Any) -> None:
        super().__init__(link)
        self.admissions = Admissions()

    def admit(self, admit: Admit) -> Lease:
        return self.admissions.admit(self.link.call, admit)

    def failed(self, report: Report) -> Lease | Done:
        return self.link.call(report)


def ask_batch(call: Callable[[Any], Any], admits: Sequence[Admit]) -> tuple[tuple, Exception | None]:
    """Ask for ``admits`` in one call (an AdmitBatch, or the lone Admit): each one's lease, or None where none
    was free that instant (it asks again); a failure is the first's error (a typed LMError) and the others
    ask again. Ctrl-C (a BaseException) is the caller's to handle."""
    try:
        reply = call(AdmitBatch(tuple(admits)) if len(admits) > 1 else admits[0])
    except Exception as exc:  # noqa: BLE001 - the first's error; the others ask again
        return (None,) * len(admits), exc
    return (reply.leases if isinstance(reply, Leases) else (reply,)), None


class _Ask:
    def __init__(self, admit: Admit) -> None:
        self.admit = admit
        self.lease: Lease | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.lease is not None or self.error is not None


class Admissions:
    """The threads of one process asking one client actor for leases, coalesced (module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[_Ask] = deque()
        self._asking = False  # a thread's AdmitBatch is on its way

    def admit(self, call: Callable[[Any], Any], admit: Admit) -> Lease:
        """A lease for ``admit`` (``call`` sends a message to the client actor and returns its answer)."""
        ask = _Ask(admit)
        with self._cond:
            self._queue.append(ask)
        while True:
            with self._cond:
                while not ask.done and self._asking:
                    self._cond.wait()
                if ask.done:
                    if ask.error is not None:
                        raise ask.error
                    return ask.lease  # type: ignore[return-value]
                self._asking = True
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            try:
                answers, error = ask_batch(call, [a.admit for a in batch])
            except BaseException:  # Ctrl-C in this thread: its own to raise; the batch asks again
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._asking = False
                    self._cond.notify_all()
                raise
            with self._cond:
                again = []
                for i, (queued, lease) in enumerate(zip(batch, answers)):
                    if i == 0 and error is not None:
                        queued.error = error
                    elif lease is not None:
                        queued.lease = lease
                    else:
                        again.append(queued)
                self._queue.extendleft(reversed(again))
                self._asking = False
                self._cond.notify_all()


__all__ = ["CoalescedChannel", "ReportingChannel", "Admissions", "ask_batch", "REPORT_EVERY"]
