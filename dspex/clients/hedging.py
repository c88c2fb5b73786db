"""When an attempt gets a twin: hedged requests (Dean and Barroso, "The Tail at Scale", 2013).

An attempt still unanswered after :meth:`Hedging.delay` is sent again, on a lease of its own from the client
actor (so limits, breaker, budget and ledger see it), and again a delay later while none has answered (at
most ``MAX_TWINS`` twins); the first answer is used and the other attempts are cancelled and booked at
their maximum (the provider may bill them). A hung connection then costs a few
latencies instead of the whole ``timeout``, and the slow tail of a large evaluation shortens.

``hedge="auto"`` (the default) hedges after ``FACTOR`` times the 95th percentile of the latencies of the
recent successful attempts (``SAMPLES`` of them, at least ``MIN_SAMPLES`` known), never sooner than
``FLOOR``; a number is a fixed delay in seconds; None never hedges. Whatever the setting, at most ``SHARE``
of attempts are hedged: a bucket refilled by each attempt (as gRPC throttles its retries) that holds at
most ``SHARE`` of the attempts of the last ``WINDOW_S`` seconds (at least ``BURST``), so a provider slow
for everyone is not sent twice the traffic, while the 1% of a 10,000-request wave that hung all get their
twins; and a delay that is not shorter than the timeout hedges nothing. Decisions only, with an injected
clock: the event loop's engine executes them (``pipeline.Pipeline``), one instance per client and
process, used from the loop's thread alone.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from .config import AUTO
FACTOR = 2.0  # auto: hedge after this many times the recent p95 latency ...
FLOOR = 1.0  # ... and never sooner than this (seconds)
SAMPLES = 64  # the successful attempts' latencies remembered (recent: the tail of a run is not its start)
MIN_SAMPLES = 16  # auto hedges nothing before this many are known
SHARE = 0.02  # at most this share of attempts is hedged ...
WINDOW_S = 10  # ... of those of the last this many seconds
BURST = 20.0  # the bucket holds at least this many
MAX_TWINS = 2  # twins of one attempt, a delay apart (a twin hangs too, 1 in 100 when 1% of connections do)


class Hedging:
    """See the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seconds: deque[list[int]] = deque()  # [second, attempts observed in it], the last WINDOW_S
        self._recent = 0  # attempts observed in the last WINDOW_S seconds
        self._latencies: deque[float] = deque(maxlen=SAMPLES)
        self._fresh = 0  # latencies added since the percentile was taken
        self._p95: float | None = None
        self._tokens = BURST

    def observe(self, ok: bool, latency_s: float) -> None:
        """Every attempt's outcome: a success's latency is learned; every attempt refills the bucket."""
        second = int(self.clock())
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])
        while self._seconds[0][0] <= second - WINDOW_S:
            self._recent -= self._seconds.popleft()[1]
        self._recent += 1
        self._tokens = min(max(BURST, SHARE * self._recent), self._tokens + SHARE)
        if ok:
            self._latencies.append(latency_s)
            self._fresh += 1
            if len(self._latencies) >= MIN_SAMPLES and (self._p95 is None or self._fresh >= 8):
                ordered = sorted(self._latencies)
                self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
                self._fresh = 0

    def delay(self, setting: float | str | None, timeout: float) -> float | None:
        """Seconds after its start at which an attempt still unanswered is hedged, as things stand now
        (None: it is not, or not yet known: see :meth:`look_again`). ``take`` says whether a twin may go."""
        if setting is None:
            return None
        if setting == AUTO:
            if self._p95 is None:
                return None
            after = max(FLOOR, FACTOR * self._p95)
        else:
            after = float(setting)
        return after if after < timeout else None

    @staticmethod
    def look_again(timeout: float) -> float:
        """How often an attempt whose delay is not known yet, or that found the share of twins used up, looks
        again (seconds): the first attempts of a run start before any latency is known, and a wave's hung
        ones are among them."""
        return max(FLOOR, timeout / 4)

    def take(self) -> bool:
        """A twin may go now (a token is taken); False: the share is used up."""
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


__all__ = ["Hedging", "FACTOR", "FLOOR", "SAMPLES", "MIN_SAMPLES", "SHARE", "WINDOW_S", "BURST", "MAX_TWINS"]
