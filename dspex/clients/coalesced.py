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

A channel made with ``ahead`` > 0 (an evaluation worker on another host) also holds leases ahead of need,
asked for in the same messages (``ahead.py``): most of its requests then take a lease without a message.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Any, Callable, Sequence

import structlog

from supervision import SupervisionError

from ..errors import LMError
from .ahead import Ahead
from .batcher import Batcher
from .messages import (Admit, AdmitBatch, CacheHit, Done, GiveBack, Lease, Leases, Recall, Release, Report, ReportBatch,
                       Unwatch)

log = structlog.get_logger("dspex")

MAX_BATCH = 16  # admissions asked for in one AdmitBatch
MAX_AHEAD = 64  # admissions asked for ahead in the same message, besides those
REPORT_EVERY = 0.005  # seconds a success report may wait for others
HELD_FOR = 1.0  # seconds (and at least twice ``ahead``) a lease held ahead waits for a request before it goes back
RECALL_WAIT = 10.0  # seconds a holder's watch for a recall waits at the client actor before it asks again
CALL_SLACK = 5.0  # seconds beyond that wait its answer may take before the watch counts it lost


class ReportingChannel:
    """What every lease channel outside the client actor's process shares: success reports batched, a
    release or a cache hit cast, ``flush`` / ``close`` sending what is pending, and the leases held ahead
    (``ahead`` seconds of this process's need; 0: none)."""

    most = MAX_BATCH  # admissions asked for in one message

    def __init__(self, link: Any, ahead: float = 0.0) -> None:  # a pipeline.ClientLink (which imports this module)
        self.link = link
        # holding leases ahead, a process reports as seldom as it asks: its successes wait up to ``ahead`` (an
        # evaluation worker flushes them with its rows, every Pace.row_delay)
        self.reports = Batcher(self._send_reports, max(REPORT_EVERY, ahead), "dspex-reports")
        self._held = Ahead(ahead, self.held_for(ahead), self.most + MAX_AHEAD) if ahead > 0 else None
        self._held_lock = threading.Condition()
        self._sweeper: threading.Thread | None = None
        self._watcher: threading.Thread | None = None  # watches for the actor's recalls while leases are held
        self._recalls = 0  # the actor's recalls as last heard: leases granted before a later one go back
        self._watch_id = uuid.uuid4().hex  # names this channel's watch at the actor
        self._closing = False

    @staticmethod
    def held_for(ahead: float) -> float:
        """Seconds a lease held ``ahead`` waits for a request before it goes back unused."""
        return max(HELD_FOR, 2 * ahead)

    def succeeded(self, report: Report) -> None:
        self.reports.add(report)

    def release(self, lease: int, run: str | None, reason: str = "Aborted") -> None:
        self.link.cast(Release(lease, run, reason))

    def cache_hit(self, run: str | None) -> None:
        self.link.cast(CacheHit(run))

    def flush(self) -> None:
        self.reports.flush()

    def take_reports(self) -> tuple[Any, list[Report]] | None:
        """The success reports waiting to be sent, with the address of the client actor they are for, taken
        to travel another way (an evaluation worker on a host hands them to the coordinator with its rows);
        None when there are none, or the actor is not known yet (they stay, and go as usual)."""
        ref = self.link.known()
        if ref is None:
            return None
        reports = self.reports.take()
        return (ref.address, reports) if reports else None

    def put_back(self, reports: list[Report]) -> None:
        """Reports taken by :meth:`take_reports` that did not reach the coordinator: they go as usual."""
        for report in reports:
            self.reports.add(report)

    def close(self) -> None:
        with self._held_lock:
            self._closing = True
            self._held_lock.notify_all()
            watcher = self._watcher
        if watcher is not None:  # its watch is answered now, so its thread leaves before the runtime closes
            try:
                self.link.cast(Unwatch(self._watch_id))
            except LMError as exc:  # the client actor is gone: so is the watch
                log.info("recall_watch_not_stopped", error=str(exc))
            watcher.join(CALL_SLACK)
        self.give_back_all()
        self.reports.close()

    # --- leases held ahead (``ahead.py``) -------------------------------------------------------

    def held_lease(self, admit: Admit, note: bool = True) -> Lease | None:
        """A lease held ahead that fits ``admit`` (None: it asks the actor); ``note``: count it in the need."""
        if self._held is None:
            return None
        with self._held_lock:
            return self._held.take(admit, note)

    def extras(self, asking: Sequence[Admit]) -> list[Admit]:
        """The admissions to ask for ahead, in the message that asks for ``asking``."""
        if self._held is None:
            return []
        with self._held_lock:
            return self._held.extras(asking)

    def hold(self, extras: Sequence[Admit], leases: Sequence[Lease | None], recalls: int = 0) -> None:
        """Keep the leases granted for ``extras`` (when the actor had recalled ``recalls`` times); each goes
        back if unused in :meth:`held_for` seconds, or when the actor recalls them (``messages.Recall``)."""
        if self._held is None or not extras:
            return
        with self._held_lock:
            back = self._heard(recalls)  # a recall this process had not heard of yet: what it holds is older
            self._held.add(extras, leases)
            if self._closing or recalls < self._recalls:  # (granted before a recall heard already)
                back += self._held.drain()
            else:
                if self._sweeper is None and self._held.held:
                    self._sweeper = threading.Thread(target=self._sweep, name="dspex-leases-ahead", daemon=True)
                    self._sweeper.start()
                if self._watcher is None and self._held.held:
                    self._watcher = threading.Thread(target=self._watch, name="dspex-recalls", daemon=True)
                    self._watcher.start()
                self._held_lock.notify_all()
        self._give_back(back)

    def give_back(self, leases: list[int]) -> None:
        """Leases granted that no attempt used (a hedge's twin not needed after all): back, unbooked."""
        self._give_back(leases)

    def give_back_all(self) -> None:
        """Every lease held ahead goes back (an attempt failed: the actor decides again; or closing)."""
        if self._held is not None:
            with self._held_lock:
                back = self._held.drain()
            self._give_back(back)

    def _give_back(self, ids: list[int]) -> None:
        if ids:
            try:
                self.link.cast(GiveBack(tuple(ids)))
            except LMError as exc:  # the client actor is gone: its leases went with it
                log.info("leases_not_given_back", leases=len(ids), error=str(exc))

    def _sweep(self) -> None:
        """Give back leases whose time is up, until none is held (the next ``hold`` starts this again)."""
        assert self._held is not None
        while True:
            with self._held_lock:
                due = self._held.next_expiry()
                if due is None or self._closing:
                    self._sweeper = None
                    return
                self._held_lock.wait(max(0.0, due - self._held.clock()))
                back = self._held.expired()
            self._give_back(back)

    def _watch(self) -> None:
        """While leases are held ahead: a long poll at the client actor for its next recall (its breaker
        opened, a 429 paused everyone), which sends them all back at once. Without an answer (the actor
        restarted, the leader out of reach) they go back too: the actor decides again."""
        assert self._held is not None
        while True:
            with self._held_lock:
                if not self._held.held or self._closing:
                    self._watcher = None
                    return
                seen = self._recalls
            try:
                recalls = self.link.call(Recall(seen, RECALL_WAIT, self._watch_id), RECALL_WAIT + CALL_SLACK,
                                         patience=RECALL_WAIT)
            except (LMError, SupervisionError) as exc:
                log.info("recall_watch_unanswered", error=str(exc))
                self.give_back_all()
                continue
            with self._held_lock:
                back = self._heard(recalls)
            self._give_back(back)

    def _heard(self, recalls: int) -> list[int]:
        """The actor has recalled ``recalls`` times (its lock held): if that is news, every lease held is
        older than the last recall, no longer held; their ids are returned to go back."""
        assert self._held is not None
        if recalls <= self._recalls:
            return []
        self._recalls = recalls
        return self._held.drain()

    def _send_reports(self, batch: list[Report]) -> None:
        try:
            self.link.cast(ReportBatch(tuple(batch)) if len(batch) > 1 else batch[0])
        except LMError as exc:  # the client actor is gone: its restart starts from the ledger
            log.warning("reports_lost", reports=len(batch), error=str(exc))


class CoalescedChannel(ReportingChannel):
    """The lease channel of a process other than the client actor's (module docstring); the same
    methods as ``pipeline.DirectChannel``, which it differs from in ``admit``, ``succeeded`` and ``flush``."""

    def __init__(self, link: Any, ahead: float = 0.0) -> None:
        super().__init__(link, ahead)
        self.admissions = Admissions(self)

    def admit(self, admit: Admit) -> Lease:
        return self.admissions.admit(self.link.call, admit)

    def failed(self, report: Report) -> Lease | Done:
        self.give_back_all()
        return self.link.call(report)


def ask_batch(call: Callable[[Any], Any], admits: Sequence[Admit],
              channel: ReportingChannel | None = None) -> tuple[tuple, Exception | None]:
    """Ask for ``admits`` in one call (an AdmitBatch, or the lone Admit): each one's lease, or None where none
    was free that instant (it asks again); a failure is the first's error (a typed LMError) and the others
    ask again. With ``channel``, the leases it holds ahead are asked for in the same call and kept there.
    Ctrl-C (a BaseException) is the caller's to handle."""
    message, extras = batch_message(admits, channel)
    try:
        reply = call(message)
    except Exception as exc:  # noqa: BLE001 - the first's error; the others ask again
        return (None,) * len(admits), exc
    return batch_answer(reply, len(admits), extras, channel), None


def batch_message(admits: Sequence[Admit], channel: ReportingChannel | None = None) -> tuple[Any, list[Admit]]:
    """The message that asks for ``admits`` (and for the leases ``channel`` holds ahead: the extras, also
    returned); :func:`ask_batch`'s first half, for a caller whose answer comes later (a future)."""
    extras = channel.extras(admits) if channel is not None else []
    asked = [*admits, *extras]
    return (AdmitBatch(tuple(asked)) if len(asked) > 1 else asked[0]), extras


def batch_answer(reply: Any, asked: int, extras: list[Admit], channel: ReportingChannel | None = None) -> tuple:
    """The leases of the ``asked`` admissions in ``reply`` (None where none was free); the extras' are kept by
    ``channel``. :func:`ask_batch`'s second half."""
    leases = reply.leases if isinstance(reply, Leases) else (reply,)
    if channel is not None:
        channel.hold(extras, leases[asked:], reply.recalls if isinstance(reply, Leases) else 0)
    return tuple(leases[:asked])


class _Ask:
    def __init__(self, admit: Admit) -> None:
        self.admit = admit
        self.lease: Lease | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.lease is not None or self.error is not None


class Admissions:
    """The threads of one process asking one client actor for leases, coalesced (module docstring); with
    ``channel``, first from the leases it holds ahead."""

    def __init__(self, channel: ReportingChannel | None = None) -> None:
        self.channel = channel
        self._cond = threading.Condition()
        self._queue: deque[_Ask] = deque()
        self._asking = False  # a thread's AdmitBatch is on its way

    def admit(self, call: Callable[[Any], Any], admit: Admit) -> Lease:
        """A lease for ``admit`` (``call`` sends a message to the client actor and returns its answer)."""
        held = self.channel.held_lease(admit) if self.channel is not None else None
        if held is not None:
            return held
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
                answers, error = ask_batch(call, [a.admit for a in batch], self.channel)
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
                if self.channel is not None:  # asks queued meanwhile take the leases just granted ahead
                    for queued in [q for q in self._queue if not q.done]:
                        queued.lease = self.channel.held_lease(queued.admit, note=False)
                    self._queue = deque(q for q in self._queue if not q.done)
                self._asking = False
                self._cond.notify_all()


__all__ = ["CoalescedChannel", "ReportingChannel", "Admissions", "ask_batch", "batch_message", "batch_answer",
           "REPORT_EVERY"]
