"""What the provider simulator does wrong, and when: fault rates, scripted schedules, latency."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import ConfigError

FAULT_KINDS = ("ok", "hang", "malformed", "truncate", "reset")
"""Non-status faults; any HTTP status code (``"500"``, ``"429"``, ...) is a fault kind too."""

Latency = float | tuple[float, float] | Callable[[random.Random], float]


def _check_kind(kind: str) -> str:
    if kind in FAULT_KINDS or (kind.isdigit() and 400 <= int(kind) <= 599):
        return kind
    raise ConfigError(f"unknown fault {kind!r}: use one of {', '.join(FAULT_KINDS)} or an HTTP status 400-599")


@dataclass
class Faults:
    """Fault injection for :class:`ProviderServer`.

    ``error_rates`` maps an HTTP status to the probability of answering with it (e.g. ``{500: 0.2, 429: 0.1}``);
    ``schedule`` forces the fault of each request in arrival order (``"ok"``, ``"429"``, ``"hang"``, ...)
    and falls back to the rates once used up. ``latency`` is seconds: a constant, a uniform ``(lo, hi)``
    range, or a function of the server's seeded random source. A 429/503 carries ``Retry-After:
    retry_after`` (seconds, or an HTTP date with ``retry_after_format="date"``). A hang holds the
    connection for ``hang_s`` and then closes it without an answer.
    """

    error_rates: dict[int, float] = field(default_factory=dict)
    hang_rate: float = 0.0
    malformed_rate: float = 0.0
    truncate_rate: float = 0.0
    reset_rate: float = 0.0
    schedule: Sequence[str] = ()
    latency: Latency = 0.0
    retry_after: float | None = 1.0
    retry_after_format: str = "seconds"
    hang_s: float = 10.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        rates = [*self.error_rates.values(), self.hang_rate, self.malformed_rate, self.truncate_rate, self.reset_rate]
        if any(r < 0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ConfigError(f"fault rates must be >= 0 and sum to at most 1, got {rates}")
        for status in self.error_rates:
            _check_kind(str(status))
        self.schedule = tuple(_check_kind(str(k)) for k in self.schedule)
        if self.retry_after_format not in ("seconds", "date"):
            raise ConfigError("retry_after_format must be 'seconds' or 'date'")


class FaultPlan:
    """Draws the fault for each request (thread-safe use is the server's job: it holds a lock)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rand = random.Random(faults.seed)
        self._scheduled = list(faults.schedule)
        f = faults
        self._table = [(str(s), r) for s, r in f.error_rates.items()] + [
            ("hang", f.hang_rate), ("malformed", f.malformed_rate), ("truncate", f.truncate_rate),
            ("reset", f.reset_rate)]

    def next_fault(self) -> str:
        if self._scheduled:
            return self._scheduled.pop(0)
        x = self.rand.random()
        for kind, rate in self._table:
            if x < rate:
                return kind
            x -= rate
        return "ok"

    def next_latency(self) -> float:
        lat = self.faults.latency
        if callable(lat):
            return max(0.0, float(lat(self.rand)))
        if isinstance(lat, tuple):
            return self.rand.uniform(*lat)
        return float(lat)


__all__ = ["Faults", "FaultPlan", "FAULT_KINDS"]
