"""Write-behind batching: items added by many threads, handed on in batches by one daemon thread.

The response cache's disk writes (one SQLite transaction for many puts) and a worker process's success
reports to a client actor (one message for many calls) both work this way: an item waits at most
``interval`` seconds for others to join its batch; ``flush()`` hands on what is pending at once (and
returns when it has); after ``close()`` every item is handed on as it comes. One batch is on its way at
a time, so batches arrive in the order their items were added.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable, Hashable


class Batcher:
    """``send(batch)`` gets the pending items, oldest first. An item added with a ``key`` replaces the
    pending item of that key (the cache keeps only a key's latest value); :meth:`pending` finds it."""

    def __init__(self, send: Callable[[list], None], interval: float, name: str) -> None:
        self.send = send
        self.interval = interval
        self.name = name
        self._cond = threading.Condition()
        self._pending: dict[Hashable, Any] = {}
        self._since = 0.0  # monotonic time the oldest pending item was added
        self._ids = itertools.count()  # keys of items added without one
        self._thread: threading.Thread | None = None
        self._closed = False
        self._send_lock = threading.Lock()  # one batch on its way at a time: batches stay in order

    def add(self, item: Any, key: Hashable | None = None) -> None:
        with self._cond:
            first = not self._pending  # the thread waits only for a first item: no wake-up for the others
            if first:
                self._since = time.monotonic()
            self._pending[(0, key) if key is not None else (1, next(self._ids))] = item
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            if first:
                self._cond.notify()
            closed = self._closed
        if closed:
            self.flush()

    def pending(self, key: Hashable) -> Any | None:
        """The item of ``key`` still waiting to be sent, or None."""
        with self._cond:
            return self._pending.get((0, key))

    def take(self) -> list:
        """The pending items, oldest first, no longer pending: the caller hands them on its own way."""
        with self._cond:
            batch, self._pending = list(self._pending.values()), {}
        return batch

    def flush(self) -> None:
        """Send every pending item now."""
        with self._send_lock:
            with self._cond:
                batch, self._pending = list(self._pending.values()), {}
            if batch:
                self.send(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the batch it is sending), then send what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                # the oldest item's time, not the first wake-up's: items taken meanwhile (``take``) and added
                # again since have waited less
                wait = self._since + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # let the items of other threads join this batch
            else:
                self.flush()


__all__ = ["Batcher"]
