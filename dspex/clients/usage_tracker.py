"""``dspex.track_usage()``: the tokens and cost of every LM answer given inside a block, per model (DSPy's
``with dspy.track_usage() as tracker: ... tracker.get_total_tokens()``).

The tracker is scoped by a ``with`` (a ``contextvars`` value): answers given in threads and tasks that carry
the block's context count (dspex's own ``Parallel``, ``n=``, ``batch`` and Evaluate's threads do); answers
given in Evaluate's worker processes do not (another interpreter): read ``result.usage`` there. A cached
answer counts with the tokens it was first billed for, as DSPy counts it. Trackers nest: an answer counts in
every open one.
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from typing import Any, Iterator

_TRACKERS: contextvars.ContextVar[tuple["UsageTracker", ...]] = contextvars.ContextVar("dspex_usage_trackers",
                                                                                        default=())


class UsageTracker:
    """Totals per model: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost`` and ``calls``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, Any]] = {}

    def add(self, model: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        with self._lock:
            entry = self._totals.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                                                    "cost": 0.0, "calls": 0})
            entry["prompt_tokens"] += prompt_tokens
            entry["completion_tokens"] += completion_tokens
            entry["total_tokens"] += prompt_tokens + completion_tokens
            entry["cost"] += cost
            entry["calls"] += 1

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        """A copy of the totals, per model (``provider/model``)."""
        with self._lock:
            return {model: dict(entry) for model, entry in self._totals.items()}

    def __repr__(self) -> str:
        return f"UsageTracker({self.get_total_tokens()})"


def active_trackers() -> tuple[UsageTracker, ...]:
    return _TRACKERS.get()


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Count the LM answers given inside the block (see the module docstring)."""
    tracker = UsageTracker()
    token = _TRACKERS.set((*_TRACKERS.get(), tracker))
    try:
        yield tracker
    finally:
        _TRACKERS.reset(token)


__all__ = ["UsageTracker", "track_usage", "active_trackers"]
