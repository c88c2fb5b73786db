"""A deadline for a whole HTTP attempt, not for each socket read.

Socket timeouts bound one ``recv``: a server that drips a byte every quarter second never trips them.
Each transport has one :class:`Deadlines` reaper: an attempt says when it must be over (``begin``); when its
connection starts waiting for the answer, its socket is watched (``arm``, from the connection class the
pool uses); one daemon thread shuts down the sockets of attempts past their deadline, so the blocked read
returns at once, and ``end`` tells the attempt it ran out of time.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any


class _Ticket:
    __slots__ = ("deadline", "sock", "done", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline, self.sock, self.done, self.expired = deadline, None, False, False


class Deadlines:
    def __init__(self, name: str = "dspex-deadlines") -> None:
        self.name = name
        self._local = threading.local()  # the attempt of the calling thread
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Ticket]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def begin(self, deadline: float) -> None:
        """The calling thread's attempt must be over by ``deadline`` (``time.monotonic``)."""
        self._local.ticket = _Ticket(deadline)

    def arm(self, sock: Any) -> None:
        """Watch ``sock`` for the calling thread's attempt (a connection about to read its answer)."""
        ticket = getattr(self._local, "ticket", None)
        if ticket is None or ticket.done or sock is None:
            return
        ticket.sock = sock
        with self._cond:
            while self._heap and self._heap[0][2].done:  # finished attempts leave from the top, lazily
                heapq.heappop(self._heap)
            heapq.heappush(self._heap, (ticket.deadline, next(self._ids), ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            if self._heap[0][2] is ticket:  # the reaper sleeps until the earliest deadline: wake it only
                self._cond.notify()          # when this one is earlier (equal timeouts almost never are)

    def end(self) -> bool:
        """The calling thread's attempt is over; True when its deadline cut it short."""
        ticket = getattr(self._local, "ticket", None)
        self._local.ticket = None
        if ticket is None:
            return False
        with self._cond:
            ticket.done = True
        return ticket.expired

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, ticket = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if ticket.done:
                    continue
                ticket.expired = True
                sock = ticket.sock
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns; the attempt reports a timeout
            except OSError:
                pass  # already closed by its owner: the attempt is ending anyway


def deadline_connection(base: type, deadlines: Deadlines) -> type:
    """A subclass of the pool's connection class whose sockets are watched while an answer is awaited."""

    class DeadlineConnection(base):  # type: ignore[misc, valid-type]
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            deadlines.arm(getattr(self, "sock", None))
            return super().getresponse(*args, **kwargs)

    DeadlineConnection.__name__ = f"Deadline{base.__name__}"
    return DeadlineConnection


__all__ = ["Deadlines", "deadline_connection"]
