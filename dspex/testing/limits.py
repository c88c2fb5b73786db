"""Rate limits the provider simulator enforces and advertises, as real providers do.

Each limit is a token bucket refilled continuously at ``rpm / 60`` requests (``tpm / 60`` tokens) per
second holding at most ``burst_s`` seconds' worth: ``ServerLimits(rpm=600)`` admits 10 requests a second,
bursts of 10. A request that finds its bucket empty is answered 429 with ``Retry-After`` (seconds until the
next request is admitted). Every answer carries the provider's own headers: OpenAI's
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` and Anthropic's
``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``; Gemini advertises nothing and says
``RetryInfo`` in its 429 body.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class ServerLimits:
    rpm: float | None = None
    tpm: float | None = None
    burst_s: float = 1.0
    advertise: bool = True

    def __post_init__(self) -> None:
        for label, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and not value > 0:
                raise ConfigError(f"ServerLimits.{label} must be > 0 or None, got {value!r}")
        if not self.burst_s > 0:
            raise ConfigError(f"ServerLimits.burst_s must be > 0, got {self.burst_s!r}")


class _Bucket:
    def __init__(self, per_minute: float, burst_s: float, clock: Callable[[], float]) -> None:
        self.per_minute, self.rate = per_minute, per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level, self.clock, self.at = self.capacity, clock, clock()

    def refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0: now)."""
        self.refill()
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float) -> None:
        self.level -= amount

    @property
    def reset_s(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)

    @property
    def remaining(self) -> int:
        """Requests (tokens) that would be admitted right now."""
        return max(0, math.floor(self.level))


@dataclass(frozen=True)
class Admission:
    """The limiter's verdict on one request, and the headers its answer carries."""

    allowed: bool
    retry_after: float
    headers: dict


class LimitState:
    """The buckets of one server (thread-safe)."""

    def __init__(self, limits: ServerLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._requests = _Bucket(limits.rpm, limits.burst_s, clock) if limits.rpm else None
        self._tokens = _Bucket(limits.tpm, limits.burst_s, clock) if limits.tpm else None

    def admit(self, provider: str, tokens: int) -> Admission:
        with self._lock:
            waits = [b.wait_for(n) for b, n in ((self._requests, 1.0), (self._tokens, float(tokens))) if b is not None]
            wait = max(waits, default=0.0)
            if wait <= 0:
                for bucket, amount in ((self._requests, 1.0), (self._tokens, float(tokens))):
                    if bucket is not None:
                        bucket.take(amount)
            return Admission(wait <= 0, wait, self._headers(provider))

    def _headers(self, provider: str) -> dict:
        if not self.limits.advertise or provider in ("gemini", "ollama_chat", "ollama", "bedrock"):  # they advertise none
            return {}
        out = {}
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is None:
                continue
            limit, remaining, reset = f"{bucket.per_minute:g}", str(bucket.remaining), bucket.reset_s
            if provider == "anthropic":
                when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + reset))
                out.update({f"anthropic-ratelimit-{kind}-limit": limit, f"anthropic-ratelimit-{kind}-remaining": remaining,
                            f"anthropic-ratelimit-{kind}-reset": f"{when}Z"})
            else:
                out.update({f"x-ratelimit-limit-{kind}": limit, f"x-ratelimit-remaining-{kind}": remaining,
                            f"x-ratelimit-reset-{kind}": f"{reset * 1000:.0f}ms"})
        return out


__all__ = ["ServerLimits", "LimitState", "Admission"]
