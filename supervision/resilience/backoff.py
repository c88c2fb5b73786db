"""Backoff schedules as pure functions (the random source is injected)."""

from __future__ import annotations

import random
from typing import Callable


def exponential_backoff(attempt: int, base: float, cap: float, jitter: float = 0.0,
                        rand: Callable[[], float] = random.random) -> float:
    """Delay before retry/restart number ``attempt`` (0-based): ``base * 2**attempt`` capped at ``cap``.

    ``jitter`` in [0, 1] spreads the delay down by up to that fraction (``jitter=1`` is AWS-style
    full jitter: uniform in [0, delay]), so synchronised failures do not retry in lockstep.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    delay = min(cap, base * (2 ** min(attempt, 62)))
    jitter = min(max(jitter, 0.0), 1.0)
    return delay * (1.0 - jitter * rand())


def health_backoff(attempt: int, base: float, cap: float, pressure: float,
                   rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number ``attempt`` (0-based) of a call that failed transiently, full jitter.

    ``pressure`` says how unwell the dependency looks: its recent failure share over the share at which
    its breaker opens (0: no recent failure, 1 or more: at the threshold). At full pressure this is the
    classic ``base * 2**attempt`` capped at ``cap``; below it both the base and the growth shrink with the
    square of the pressure, ``s = pressure**2``: ``base * s * 2**(attempt * s)``. So the scattered errors
    of a healthy dependency are retried soon (one request's bad luck is not a sign of trouble: a fifth of
    calls failing against a breaker at half gives s = 0.16, tens of milliseconds), a degraded one gets
    most of the backoff, and an outage opens the breaker.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    scale = min(max(pressure, 0.0), 1.0) ** 2
    return min(cap, base * scale * 2 ** min(attempt * scale, 62)) * rand()
