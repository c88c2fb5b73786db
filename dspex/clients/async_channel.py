"""The lease channel of tasks on the event loop: thousands of requests' admissions asked for in batches by one
thread, so the client actor stays the single owner of limits, breaker and ledger while its cost per request
stays flat as concurrency grows.

A task that needs a lease puts its ``Admit`` and a future in a queue and awaits the future. One pump thread
per channel takes up to ``MAX_BATCH`` of them and sends one :class:`AdmitBatch` (a blocking call: the
actor answers when the first may go, and leases the others only if free that instant); the leases come back
to their futures in one hop onto the loop, and the rest queue again. A task cancelled while it waits (its
example timed out) has its lease handed back the moment it arrives. Success reports go in batches
(``batcher.Batcher``), as from a worker process. A failed attempt's report is a call whose answer (the next
attempt's lease after its backoff, or the typed error) may take seconds: its reply resolves a future
(``ActorRef.call_future``), so no thread waits through the backoff, however many attempts failed at once.

When the client actor runs in this process (the local base: ``inline``), there is no pump and no report
thread: the loop asks itself, one ``AdmitBatch`` at a time as a ``call_future`` (the local base runs the actor
in the asking thread, so a free lease is there before the call returns, and one waited for comes with the
report that freed it), and the success reports of one turn of the loop go as one message at the next, sent
from the loop. A lease then reaches its task within a turn or two of the one that freed it: at 64 in
flight and 50 ms, asking through the pump thread (a thread hop each way, waiting for the GIL the loop holds)
with reports gathered for 5 ms on a thread of theirs had kept each admission waiting ~4 ms (now ~1.6 ms, the
loop's turns), and the rate was ~8% lower.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from typing import Any

from supervision import ActorExited

from .coalesced import ReportingChannel, ask_batch, batch_answer, batch_message
from .messages import Admit, Done, Lease, Report

MAX_BATCH = 512  # admissions asked for in one AdmitBatch


class AsyncChannel(ReportingChannel):
    """See the module docstring. ``link``: the pipeline's ``ClientLink``."""

    most = MAX_BATCH

    def __init__(self, link: Any, ahead: float = 0.0, inline: bool = False) -> None:
        super().__init__(link, ahead)
        self.inline = inline  # the client actor runs in this process: the loop asks (module docstring)
        self._cond = threading.Condition()
        self._asks: deque[tuple[Admit, asyncio.Future]] = deque()
        self._pump: threading.Thread | None = None
        self._closed = False
        self._asking = False  # inline: an AdmitBatch's answer is awaited (one at a time)
        self._ask_due = False  # inline: the loop asks at its next turn
        self._turn_reports: list[Report] = []  # inline: success reports that go at the end of this turn

    # --- what the pipeline's async lease steps use -------------------------------------------------

    async def admit(self, admit: Admit) -> Lease:
        """A lease for attempt 0 (waits its turn; a typed LMError when it may not be sent)."""
        held = self.held_lease(admit)
        if held is not None:
            return held
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("dspex bug: a request on a closed lease channel")
            first = not self._asks  # the pump waits only for a first ask: no wake-up for the others
            self._asks.append((admit, future))
            if self.inline:
                if not self._asking and not self._ask_due:
                    self._ask_due = True
                    loop.call_soon(self._ask_inline)
            else:
                if self._pump is None:
                    self._pump = threading.Thread(target=self._pump_admissions, name="dspex-admissions", daemon=True)
                    self._pump.start()
                if first:
                    self._cond.notify()
        try:
            return await future
        except asyncio.CancelledError:  # cancelled just as its lease came: the lease goes back, never leaks
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result().id, admit.run)
            raise

    async def failed(self, report: Report) -> Lease | Done:
        """A failed attempt's outcome: the next attempt's lease (after its backoff), or the request's typed
        error. The call's reply resolves a future: no thread waits through the backoff."""
        self.give_back_all()
        answer = self.link.call_future(report)
        try:
            return await asyncio.wrap_future(answer)
        except ActorExited as exc:
            raise self.link.exited(exc) from None
        except asyncio.CancelledError:  # its example timed out: a lease that comes later goes back
            answer.add_done_callback(lambda f: self._release_late(f, report.run))
            raise

    def succeeded(self, report: Report) -> None:
        if not self.inline:
            super().succeeded(report)
            return
        with self._cond:
            self._turn_reports.append(report)
            first = len(self._turn_reports) == 1
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._report_turn)
            except RuntimeError:  # not on a loop: it goes now
                self._report_turn()

    def flush(self) -> None:
        self._report_turn()
        super().flush()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._report_turn()
        super().close()

    # --- inline: the loop asks (module docstring) ----------------------------------------------

    def _report_turn(self) -> None:
        with self._cond:
            batch, self._turn_reports = self._turn_reports, []
        if batch:
            self._send_reports(batch)

    def _ask_inline(self) -> None:
        """On the loop: one AdmitBatch for the asks queued, unless one is awaited (its answer asks again)."""
        with self._cond:
            self._ask_due = False
            if self._asking or self._closed:
                return
            batch = []
            while self._asks and len(batch) < self.most:
                admit, future = self._asks.popleft()
                if not future.cancelled():  # its task gave up before it was asked for
                    batch.append((admit, future))
            if not batch:
                return
            self._asking = True
        message, extras = batch_message([admit for admit, _ in batch], self)
        try:
            answer = self.link.call_future(message)
        except Exception as exc:  # noqa: BLE001 - finding the client actor failed: the first's error
            answer = concurrent.futures.Future()
            answer.set_exception(exc)
        if answer.done():  # (the local base: a free lease is there already)
            self._answered_inline(batch, extras, answer)
        else:
            loop = asyncio.get_running_loop()
            answer.add_done_callback(lambda done: self._to_loop(loop, batch, extras, done))

    def _to_loop(self, loop: asyncio.AbstractEventLoop, batch: list, extras: list[Admit],
                 answer: concurrent.futures.Future) -> None:
        try:
            loop.call_soon_threadsafe(self._answered_inline, batch, extras, answer)
        except RuntimeError:  # the loop is closed: nobody waits; what was granted goes back
            if answer.exception() is None:
                leases = batch_answer(answer.result(), len(batch), extras, self)
                for (admit, _), lease in zip(batch, leases):
                    if lease is not None:
                        self.release(lease.id, admit.run)

    def _answered_inline(self, batch: list, extras: list[Admit], answer: concurrent.futures.Future) -> None:
        error: Exception | None = None
        try:
            leases = batch_answer(answer.result(), len(batch), extras, self)
        except ActorExited as exc:
            error, leases = self.link.exited(exc), (None,) * len(batch)
        except Exception as exc:  # noqa: BLE001 - the first's error (a typed LMError); the others ask again
            error, leases = exc, (None,) * len(batch)
        self._settle(self._sort(batch, leases, error))
        with self._cond:  # (no ask was scheduled meanwhile: admit schedules one only while none is awaited)
            self._asking = False
            again = bool(self._asks)
        if again:
            self._ask_inline()

    # --- the pump ------------------------------------------------------------------------------

    def _pump_admissions(self) -> None:
        while True:
            with self._cond:
                while not self._asks and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch, held = [], []
                while self._asks and len(batch) < MAX_BATCH:
                    admit, future = self._asks.popleft()
                    if future.cancelled():  # its task gave up before it was asked for
                        continue
                    lease = self.held_lease(admit, note=False)  # one granted ahead since it queued
                    if lease is not None:
                        held.append((future, lease, None, admit.run))
                    else:
                        batch.append((admit, future))
            self._deliver(held)
            if batch:
                self._ask(batch)

    def _ask(self, batch: list[tuple[Admit, asyncio.Future]]) -> None:
        answers, error = ask_batch(self.link.call, [admit for admit, _ in batch], self)
        self._deliver(self._sort(batch, answers, error))

    def _sort(self, batch: list[tuple[Admit, asyncio.Future]], answers: tuple, error: Exception | None) -> list:
        """The answers of one AdmitBatch: those to ask again are queued first; the others are returned in
        ``_settle``'s form (settled on the loop, or delivered to it from the pump)."""
        settled, again = [], []
        for i, ((admit, future), lease) in enumerate(zip(batch, answers)):
            if i == 0 and error is not None:
                settled.append((future, None, error, admit.run))
            elif lease is not None:
                settled.append((future, lease, None, admit.run))
            else:
                again.append((admit, future))
        with self._cond:
            self._asks.extendleft(reversed(again))
        return settled

    def _deliver(self, settled: list) -> None:
        """Hand ``(future, lease, error, run)`` answers to their tasks, in one hop onto the loop."""
        if settled:
            loop = settled[0][0].get_loop()
            try:
                loop.call_soon_threadsafe(self._settle, settled)
            except RuntimeError:  # the loop is closed: nobody waits; the leases go back
                for _, lease, _, run in settled:
                    if lease is not None:
                        self.release(lease.id, run)

    def _settle(self, settled: list) -> None:
        """On the loop: each lease to its waiting task (or back, if the task gave up meanwhile)."""
        for future, lease, error, run in settled:
            if future.done():
                if lease is not None:
                    self.release(lease.id, run)
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(lease)

    def _release_late(self, answer: concurrent.futures.Future, run: str | None) -> None:
        if answer.cancelled() or answer.exception() is not None:
            return
        lease = answer.result()
        if isinstance(lease, Lease):
            self.release(lease.id, run)


__all__ = ["AsyncChannel", "MAX_BATCH"]
