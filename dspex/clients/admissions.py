"""Admissions of one process's threads to one client actor, coalesced into one call at a time.

In a process other than the client actor's (an evaluation worker), asking for a lease is a
cross-process round trip. Threads that need a lease while another thread's request is on its way
queue up; when the answer comes, the next thread asks for all of them at once (:class:`AdmitBatch`).
The actor grants the first when its turn comes and the others only if a lease is free that instant,
so no lease is ever held without a thread waiting for it (nothing to give back, nothing to leak).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from .messages import Admit, AdmitBatch, Lease, Leases

MAX_BATCH = 16


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
