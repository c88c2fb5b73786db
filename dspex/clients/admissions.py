"""Traffic of one process's threads to one client actor, coalesced: admissions and success reports.

In a process other than the client actor's (an evaluation worker), asking for a lease is a
cross-process round trip. Threads that need a lease while another thread's request is on its way
queue up; when the answer comes, the next thread asks for all of them at once (:class:`AdmitBatch`).
The actor grants the first when its turn comes and the others only if a lease is free that instant,
so no lease is ever held without a thread waiting for it (nothing to give back, nothing to leak).

Success reports (one-way) are gathered for a few milliseconds and sent as one :class:`ReportBatch`;
``flush()`` sends what is pending at once (an evaluation worker flushes before it hands in its rows,
so the ledger has every call of a row before the row is counted).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import structlog

from ..errors import LMError
from .messages import Admit, AdmitBatch, Lease, Leases, Report, ReportBatch

log = structlog.get_logger("dspex")

MAX_BATCH = 16
REPORT_EVERY = 0.005  # seconds a success report may wait for others


class _Ask:
    def __init__(self, admit: Admit) -> None:
        self.admit = admit
        self.lease: Lease | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.lease is not None or self.error is not None


class Admissions:
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
            answers: tuple = (None,) * len(batch)
            error: BaseException | None = None
            try:
                reply = call(AdmitBatch(tuple(a.admit for a in batch)) if len(batch) > 1 else batch[0].admit)
                answers = reply.leases if isinstance(reply, Leases) else (reply,)
            except Exception as exc:  # noqa: BLE001 - the first's error (typed LMError); the others ask again
                error = exc
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


class Reports:
    """Success reports of this process's threads, sent in batches by one daemon thread."""

    def __init__(self, interval: float = REPORT_EVERY) -> None:
        self.interval = interval
        self._cond = threading.Condition()
        self._pending: list[Report] = []
        self._cast: Callable[[Any], None] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._send_lock = threading.Lock()  # one batch on its way at a time: reports stay in order

    def add(self, cast: Callable[[Any], None], report: Report) -> None:
        with self._cond:
            self._cast = cast
            self._pending.append(report)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="dspex-reports", daemon=True)
                self._thread.start()
            self._cond.notify()
        if self._closed:
            self.flush()

    def flush(self) -> None:
        """Send every pending report now (returns once they are handed to the actor system)."""
        with self._send_lock:
            with self._cond:
                batch, self._pending = self._pending, []
                cast = self._cast
            if batch and cast is not None:
                try:
                    cast(ReportBatch(tuple(batch)) if len(batch) > 1 else batch[0])
                except LMError as exc:  # the client actor is gone: its restart starts from the ledger
                    log.warning("reports_lost", reports=len(batch), error=str(exc))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            time.sleep(self.interval)  # let the reports of other threads join this batch
            self.flush()
