"""AdaptiveRate: which request/token rate is in force, and why — a pure decision with an injected clock.

A limit is ``"fixed"`` (the user set a number), ``"none"`` (no cap: the user said ``None``, or nothing has
told us of one), ``"advertised"`` (the server's own headers name its limit) or ``"learned"`` (AIMD after
being throttled: multiplicative decrease on a 429, additive increase while successes flow, never
above an advertised limit). A 429 whose response names no limit is weak evidence of one (providers also
answer 429 when they are busy, at random): it decreases the rate only while 429s are a sustained share
(``WEAK_SHARE`` of at least ``WEAK_MIN`` answers of the last ``RECENT_S`` seconds), so scattered 429s
that its retries absorb leave the rate alone, while a server really over its limit soon says 429 to
most requests. In auto mode the very first request goes alone (a *probe*), so a burst of
callers does not hit a strict server before its headers have been read; its answer ends the probe
whatever it says. The owner (a client actor) applies the rates to a :class:`RateLimiter`.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..errors import SpecError

AUTO = "auto"


class RateSource(str, enum.Enum):
    NONE = "none"
    FIXED = "fixed"
    ADVERTISED = "advertised"
    LEARNED = "learned"


@dataclass(frozen=True)
class Advert:
    """One limit as a server states it: ``limit`` per minute, ``remaining`` now, ``reset_s`` until full."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None


@dataclass(frozen=True)
class RateHints:
    """What one response said about request and token limits (either may be absent)."""

    requests: Advert | None = None
    tokens: Advert | None = None


@dataclass(frozen=True)
class RateStatus:
    """The rates in force (per minute; None = no cap) and where they came from."""

    rpm: float | None
    tpm: float | None
    source: RateSource
    tpm_source: RateSource
    probing: bool = False
    advertised_rpm: float | None = None
    advertised_tpm: float | None = None
    throttled: int = 0


Setting = float | str | None
DECREASE = 0.7  # on a 429, the rate in force times this
RECENT_S = 10.0  # the window over which the accepted rate is measured (for a first decrease)
STEP_MAX = 3.0  # rpm added per success: a rate grows back by about 5% a second, whatever its size
WEAK_SHARE = 0.5  # a 429 naming no limit decreases the rate only when 429s are this share of recent answers
WEAK_MIN = 10  # ... of at least this many answers


class ThrottleShare:
    """Whether a 429 is congestion or chance, from the recent answers (a pure decision, clock injected).

    A 429 whose response names a request or token limit is congestion; one naming none is congestion only
    while 429s are a sustained share (``WEAK_SHARE`` of at least ``WEAK_MIN`` answers of the last
    ``RECENT_S`` seconds): providers also answer 429 when busy, at random, and at ten thousand in flight a
    5% share of those arrives many times a second. What congestion earns is its owner's to say (the rate
    policy decreases; the client actor pauses every request; a process holds its leased attempts)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._answers: deque[float] = deque()  # times of the recent answers (any kind)
        self._429s: deque[float] = deque()  # times of the recent 429s

    def answered(self) -> None:
        _note(self._answers, self.clock())

    def throttled(self) -> None:
        _note(self._429s, self.clock())

    def sustained(self) -> bool:
        """429s are at least WEAK_SHARE of the answers of the last RECENT_S seconds (WEAK_MIN of them)."""
        now = self.clock()
        _note(self._answers, now, add=False)
        _note(self._429s, now, add=False)
        answers = max(len(self._answers), len(self._429s))  # a caller may report a 429 without its answer
        return answers >= WEAK_MIN and len(self._429s) >= WEAK_SHARE * answers

    def congestion(self, hints: RateHints | None) -> bool:
        """A 429 (already counted with :meth:`throttled`) that said ``hints`` is congestion."""
        return _names_limit(hints) or self.sustained()


class AdaptiveRate:
    """Rates per minute for one client: ``rpm`` / ``tpm`` are a number (fixed), None (none) or "auto"."""

    def __init__(self, rpm: Setting = AUTO, tpm: Setting = AUTO, *, decrease: float = DECREASE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if not (value is None or value == AUTO or (isinstance(value, (int, float)) and value > 0)):
                raise SpecError(f"AdaptiveRate.{label}", repr(value), "use a positive number, None or 'auto'")
        if not 0 < decrease < 1:
            raise SpecError("AdaptiveRate.decrease", repr(decrease), "use a number in (0, 1)")
        self.auto_rpm, self.auto_tpm = rpm == AUTO, tpm == AUTO
        self.rpm: float | None = None if rpm == AUTO else rpm  # type: ignore[assignment]
        self.tpm: float | None = None if tpm == AUTO else tpm  # type: ignore[assignment]
        self.source = RateSource.NONE if rpm is None or rpm == AUTO else RateSource.FIXED
        self.tpm_source = RateSource.NONE if tpm is None or tpm == AUTO else RateSource.FIXED
        self.advertised_rpm: float | None = None
        self.advertised_tpm: float | None = None
        self.probing = self.auto_rpm  # until the first answer
        self.throttled = 0
        self.decrease, self.clock = decrease, clock
        self._step = 1.0  # additive increase per success (rpm), set at each decrease
        self._decreased_at = float("-inf")
        self._ok: deque[float] = deque()
        self.share = ThrottleShare(clock)

    # --- what happened ---------------------------------------------------------------------------

    def answered(self, hints: RateHints | None) -> bool:
        """Any answer (ends the probe); adopts advertised limits. True when a rate changed."""
        before = self._key()
        self.probing = False
        self.share.answered()
        if hints is not None and self.auto_rpm and hints.requests and hints.requests.limit:
            self._advertise_rpm(hints.requests.limit)
        if hints is not None and self.auto_tpm and hints.tokens and hints.tokens.limit:
            self.advertised_tpm = self.tpm = float(hints.tokens.limit)
            self.tpm_source = RateSource.ADVERTISED
        return self._key() != before

    def succeeded(self) -> bool:
        """A success: additive increase of a learned rate, up to the advertised limit (if any); the
        successes of the last few seconds measure the rate the server accepts (for a first decrease)."""
        _note(self._ok, self.clock())
        if not self.auto_rpm or self.source is not RateSource.LEARNED or self.rpm is None:
            return False
        ceiling = self.advertised_rpm
        self.rpm = self.rpm + self._step if ceiling is None else min(ceiling, self.rpm + self._step)
        if ceiling is not None and self.rpm >= ceiling:
            self.source = RateSource.ADVERTISED
        return True

    def throttled_by_server(self, sent_at: float | None = None, hints: RateHints | None = None) -> bool:
        """A 429 (``hints``: what its response said about limits): multiplicative decrease of the rate in
        force (a first one from the measured sending rate). One decrease per congestion event: a 429 for a
        request sent (``sent_at``, this clock) before the last decrease was already paid for. A 429 that
        names no limit decreases it only while 429s are a sustained share of the recent answers."""
        self.throttled += 1
        self.probing = False
        self.share.throttled()
        if not self.auto_rpm or (sent_at is not None and sent_at < self._decreased_at):
            return False
        if not self.share.congestion(hints):
            return False
        self._decreased_at = self.clock()
        current = self.rpm if self.rpm is not None else self.recent_rpm()
        self.rpm = max(1.0, current * self.decrease)
        self._step = min(STEP_MAX, max(0.5, current / 100.0))
        self.source = RateSource.LEARNED
        return True

    def recent_rpm(self) -> float:
        """Requests per minute the server accepted over the last few seconds (at least one a second)."""
        now = self.clock()
        recent = [t for t in self._ok if t >= now - RECENT_S]
        if len(recent) < 2:
            return 60.0
        span = max(now - recent[0], 1.0)
        return len(recent) * 60.0 / span

    def status(self) -> RateStatus:
        return RateStatus(self.rpm, self.tpm, self.source, self.tpm_source, self.probing, self.advertised_rpm,
                          self.advertised_tpm, self.throttled)

    # --- internals -------------------------------------------------------------------------------

    def _advertise_rpm(self, limit: float) -> None:
        self.advertised_rpm = limit = float(limit)
        learned = self.source is RateSource.LEARNED and self.rpm is not None
        self.rpm = min(self.rpm, limit) if learned else limit  # type: ignore[type-var]
        self.source = RateSource.ADVERTISED if self.rpm >= limit else RateSource.LEARNED

    def _key(self) -> tuple:
        return (self.rpm, self.tpm, self.source, self.tpm_source, self.probing)


def _note(times: deque[float], now: float, add: bool = True) -> None:
    """Append ``now`` to a deque of recent times and drop those older than RECENT_S."""
    if add:
        times.append(now)
    while times and times[0] < now - RECENT_S:
        times.popleft()


def _names_limit(hints: RateHints | None) -> bool:
    """The response states a request or token limit (strong evidence of one)."""
    return hints is not None and any(a is not None and bool(a.limit) for a in (hints.requests, hints.tokens))


__all__ = ["AdaptiveRate", "ThrottleShare", "RateSource", "RateStatus", "RateHints", "Advert", "AUTO"]
