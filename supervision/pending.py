"""Calls whose replies resolve futures: a ``handle_call`` whose answer may come seconds later (a deferred
reply), asked for by code that must not hold a thread while it waits — an event loop's tasks, thousands at
once (``ActorRef.call_future``; OTP's ``gen_server:send_request`` / ``receive_response``).

:class:`PendingCalls` is the bookkeeping, a plain value: each call's future by correlation id, with its
deadline and the address it went to. The runtime feeds it every reply it collects, and one driver thread per
runtime (started while calls are pending) keeps the replies coming: on the local base it lets the system's
timers fire (as a waiting caller does); on the process bases it owns an endpoint of its own, sends the calls
from it and listens there. A call past its deadline fails with ``CallTimeout``, one to an actor that exited
with ``ActorExited`` (checked every ``LIVENESS_EVERY`` s), and every pending call with ``Shutdown`` when the
runtime closes.

A future is marked running when it is made, so cancelling it (an awaiting task given up) leaves it to be
resolved when the reply comes: whoever made the call can still see what the reply held (a lease to give
back) with ``add_done_callback``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from .errors import ActorExited, CallTimeout
from .messages import CallError, Reply

LIVENESS_EVERY = 1.0  # seconds between checks that the actors with calls pending are alive


class PendingCalls:
    """See the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[concurrent.futures.Future, float, Any, Any, float]] = {}
        self._ready: list[tuple[concurrent.futures.Future, Any]] = []  # claimed replies, not settled yet

    def add(self, corr: int, now: float, timeout: float, address: Any, request: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # (see the module docstring: cancel() cannot drop it)
        with self._lock:
            self._calls[corr] = (future, now + timeout, address, request, timeout)
        return future

    def __len__(self) -> int:
        return len(self._calls) + len(self._ready)

    def waiting(self, corr: int) -> bool:
        """Whether the call ``corr`` still waits for its reply."""
        with self._lock:
            return corr in self._calls

    def take(self, reply: Any) -> bool:
        """Claim ``reply`` (a Reply or CallError) for the call it answers; False if it answers none of them.
        Its future is settled by :meth:`settle`, which the runtime calls outside its own lock (a future's
        callbacks may call the runtime again)."""
        if not isinstance(reply, (Reply, CallError)):
            return False
        with self._lock:
            found = self._calls.pop(reply.corr, None)
            if found is None:
                return False
            self._ready.append((found[0], reply))
        return True

    def settle(self) -> None:
        """Settle the futures of the replies claimed so far."""
        with self._lock:
            ready, self._ready = self._ready, []
        for future, reply in ready:
            if isinstance(reply, CallError):
                future.set_exception(reply.error)
            else:
                future.set_result(reply.value)

    def addresses(self) -> list[Any]:
        """The addresses with calls pending, each once (Thespian's addresses compare, but do not hash)."""
        with self._lock:
            found: list[Any] = []
            for entry in self._calls.values():
                if entry[2] not in found:
                    found.append(entry[2])
            return found

    def fail(self, error: BaseException, corr: int | None = None, address: Any = None) -> None:
        """Fail the call ``corr``, the calls to ``address``, or (neither given) every pending call."""
        with self._lock:
            if corr is not None:
                gone = [corr] if corr in self._calls else []
            else:
                gone = [c for c, entry in self._calls.items() if address is None or entry[2] == address]
            failed = [self._calls.pop(c)[0] for c in gone]
        for future in failed:
            future.set_exception(error)

    def expire(self, now: float) -> None:
        """Fail the calls past their deadline with ``CallTimeout``."""
        with self._lock:
            late = [(c, entry) for c, entry in self._calls.items() if entry[1] <= now]
            for c, _ in late:
                del self._calls[c]
        for _, (future, _, address, request, timeout) in late:
            future.set_exception(CallTimeout(str(address), request, timeout))

    def exited(self, address: Any, reason: str) -> None:
        self.fail(ActorExited(str(address), reason), address=address)


__all__ = ["PendingCalls", "LIVENESS_EVERY"]
