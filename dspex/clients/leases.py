"""Leases in blocks, for handles in other processes than the client actor (evaluation workers).

A cross-process call to the client actor costs about as much CPU as a whole request, so such a
handle takes up to ``block`` leases at once (only those free right now: a place in flight, a due
rate slot, a closed breaker, budget left) and reports its successes in batches, piggybacked on the
next block request or sent by ``flush``. Failures still report one by one (the actor decides the
retry). A lease unused for ``MAX_IDLE`` seconds is given back, so stock never starves other callers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from .messages import Lease, Settled, SettleBatch

MAX_IDLE = 1.0


class LeasePool:
    """Thread-safe stock of leases and pending success reports for one client in one process."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.price: tuple | None = None
        self._stock: deque[tuple[Lease, float]] = deque()
        self._settled: list[Settled] = []
        self._stale: list[int] = []
        self._lock = threading.Lock()

    def take(self) -> Lease | None:
        """A fresh lease from stock, or None (then ask the actor for a block)."""
        now = time.monotonic()
        with self._lock:
            while self._stock:
                lease, got = self._stock.popleft()
                if now - got <= MAX_IDLE:
                    return lease
                self._stale.append(lease.id)
            return None

    def add(self, leases: tuple, price: tuple | None) -> None:
        now = time.monotonic()
        with self._lock:
            self.price = price
            self._stock.extend((lease, now) for lease in leases)

    def settled(self, item: Settled) -> None:
        with self._lock:
            self._settled.append(item)

    def drain(self) -> tuple[tuple, tuple]:
        """(pending successes, leases to give back) — the caller sends them to the actor."""
        with self._lock:
            settled, self._settled = tuple(self._settled), []
            stale, self._stale = tuple(self._stale), []
            return settled, stale

    def flush(self, call: Callable[[object], object], release_all: bool = False) -> None:
        """Send pending successes (and stale or, with ``release_all``, every unused lease) to the actor."""
        with self._lock:
            if release_all:
                self._stale.extend(lease.id for lease, _ in self._stock)
                self._stock.clear()
        settled, stale = self.drain()
        if settled or stale:
            call(SettleBatch(settled, stale))
