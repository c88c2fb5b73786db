"""RateLimiter: requests and tokens per minute, by reservation, so waiting callers never stampede.

Two limits hold together for requests: a token bucket (GCRA: one request every ``60/rpm`` s, bursts of
``burst``) and a sliding window (never more than ``rpm`` requests in any ``window`` seconds). Tokens per
minute are a sliding-window sum (estimates at reservation, corrected by ``settle`` with the real count).
``reserve`` never refuses: it books the earliest slot that keeps every limit and says when it is. A
server's ``Retry-After`` calls ``pause``: no slot is given before the pause ends, and the slots after it
are spaced as usual. One actor owns a limiter (not thread-safe by design); the clock is injected.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..errors import SpecError


@dataclass(frozen=True)
class Reservation:
    """A booked slot: the call may start at ``at`` (the limiter's clock)."""

    id: int
    at: float
    tokens: int


@dataclass(frozen=True)
class LimiterSnapshot:
    name: str
    rpm: float | None
    tpm: float | None
    requests_in_window: int
    tokens_in_window: int
    paused_for: float
    backlog_s: float


class RateLimiter:
    """Book slots with ``reserve(tokens)``; ``pause(seconds)`` on a 429; ``settle`` real token counts."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, burst: int | None = None,
                 window: float = 60.0, name: str = "limiter", clock: Callable[[], float] = time.monotonic) -> None:
        if burst is not None and burst < 1:
            raise SpecError("RateLimiter.burst", f"{burst}", "use an integer >= 1")
        self.window, self.name, self.clock = window, name, clock
        self._burst_setting = burst
        self._tat = 0.0  # GCRA's theoretical arrival time
        self._last = 0.0  # slots are handed out in non-decreasing order
        self._paused_until = 0.0
        self._pause_began = float("-inf")  # when the last pause began
        self._requests: deque[float] = deque(maxlen=None)
        self._tokens: deque[list] = deque()  # [at, tokens, id]
        self._token_sum = 0
        self._by_id: dict[int, list] = {}
        self._ids = itertools.count(1)
        self.set_limits(rpm, tpm)

    def set_limits(self, rpm: float | None, tpm: float | None, *, sliding_window: bool = True) -> None:
        """Change the limits in force (an adaptive policy learned or was told new ones); slots already
        booked still count against them. ``sliding_window=False`` keeps only the token bucket for
        requests: a rate lowered after a 429 then applies from now on, not to the last minute's traffic."""
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise SpecError(f"RateLimiter.{label}", f"{value}", "use a positive number or None for no limit")
        self.rpm, self.tpm = rpm, tpm
        self.burst = self._burst_setting or (max(1, math.floor(rpm / 60.0)) if rpm else 1)  # one second's worth
        self._interval = 60.0 / rpm if rpm else 0.0
        self._tolerance = (self.burst - 1) * self._interval
        size = max(1, math.floor(rpm * self.window / 60.0)) if rpm and sliding_window else None
        self._requests = deque(self._requests if size else (), maxlen=size)

    def reserve(self, tokens: int = 0) -> Reservation:
        """Book the earliest slot for one request using ``tokens`` (an estimate is fine)."""
        return self._book(self._slot(tokens), tokens)

    def available_in(self, tokens: int = 0) -> float:
        """Seconds until a slot for ``tokens`` would be free (0: now), without booking anything."""
        return max(0.0, self._slot(tokens) - self.clock())

    def try_reserve(self, tokens: int = 0) -> Reservation | None:
        """Book a slot only if one is free right now (for handing out leases in blocks); else None."""
        at = self._slot(tokens)
        return self._book(at, tokens) if at <= self.clock() else None

    def _slot(self, tokens: int) -> float:
        now = self.clock()
        self._prune(now)
        at = max(now, self._paused_until, self._last)
        if self.rpm:
            at = max(at, self._tat - self._tolerance)
            if self._requests.maxlen is not None and len(self._requests) == self._requests.maxlen:
                at = max(at, self._requests[0] + self.window)
        if self.tpm and tokens:
            if tokens > self.tpm:
                raise SpecError("RateLimiter.tpm", f"one request needs {tokens} tokens but tpm is {self.tpm:g}",
                                "raise tpm or make the request smaller")
            at = max(at, self._token_slot(tokens))
        return at

    def _book(self, at: float, tokens: int) -> Reservation:
        rid = next(self._ids)
        if self.rpm:
            self._tat = max(self._tat, at) + self._interval
            if self._requests.maxlen is not None:
                self._requests.append(at)
        if self.tpm:
            entry = [at, tokens, rid]
            self._tokens.append(entry)
            self._by_id[rid] = entry
            self._token_sum += tokens
        self._last = at
        return Reservation(rid, at, tokens)

    def delay(self, reservation: Reservation) -> float:
        """Seconds from now until the reserved slot."""
        return max(0.0, reservation.at - self.clock())

    def settle(self, reservation: Reservation, actual_tokens: int) -> None:
        """Replace the estimate with what the provider counted."""
        entry = self._by_id.get(reservation.id)
        if entry is not None:
            self._token_sum += actual_tokens - entry[1]
            entry[1] = actual_tokens

    def pause(self, seconds: float, sent_at: float | None = None) -> float:
        """Give no slot before ``seconds`` from now (e.g. a 429's Retry-After); returns the pause end.

        A 429 for a request sent (``sent_at``, this clock) before the last pause began belongs to the
        congestion that pause was for, and does not pause again (as a rate policy decreases once a congestion
        event): at 10,000 in flight the 429s of one burst reach the limiter's owner over seconds, and each
        pausing anew from its arrival held every request seconds past what the server had asked."""
        now = self.clock()
        if sent_at is not None and sent_at < self._pause_began:
            return self._paused_until
        until = now + max(0.0, seconds)
        if until > self._paused_until:
            if self._paused_until <= now:  # a new pause, not a longer one
                self._pause_began = now
            self._paused_until = until
            self._tat = max(self._tat, until)
        return self._paused_until

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock())

    def snapshot(self) -> LimiterSnapshot:
        now = self.clock()
        self._prune(now)
        in_window = sum(1 for t in self._requests if t > now - self.window)
        return LimiterSnapshot(self.name, self.rpm, self.tpm, in_window, self._token_sum, self.paused_for,
                               max(0.0, self._last - now))

    def _token_slot(self, tokens: int) -> float:
        """The earliest time at which ``tokens`` more fit into the sliding window."""
        running = self._token_sum
        slot = 0.0
        for at, used, _ in self._tokens:
            if running + tokens <= self.tpm:
                break
            running -= used
            slot = at + self.window
        return slot

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._tokens and self._tokens[0][0] <= horizon:
            at, used, rid = self._tokens.popleft()
            self._token_sum -= used
            self._by_id.pop(rid, None)


__all__ = ["RateLimiter", "Reservation", "LimiterSnapshot"]
