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
