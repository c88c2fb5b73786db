"""The dspex events a runtime publishes on its bus (``rt.subscribe``), beside the supervision tree's
lifecycle events: small immutable values, at the bottom of the layers so that whatever watches a
runtime (the dashboard, tests) needs nothing of what publishes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EvalProgress:
    """An evaluation's progress, published as rows arrive (at most ten times a second) and once more
    when it ends (``finished``): what a dashboard shows."""

    run: str
    total: int
    done: int
    failed: int
    rate_per_s: float
    eta_s: float | None
    spend_usd: float
    finished: bool = False
    aborted: str | None = None


@dataclass(frozen=True)
class RowFinished:
    """One row of an evaluation (an ``EvalRow``), published as it finishes, only when someone subscribed:
    the dashboard fills its per-example table from these."""

    run: str
    row: Any


@dataclass(frozen=True)
class CompileProgress:
    """Published at each step of a compile."""

    run: str
    optimizer: str
    phase: str
    candidate: int | None
    score: float | None
    best: float | None
    calls: int
    spend_usd: float
    eta_s: float | None
    finished: bool = False


__all__ = ["EvalProgress", "RowFinished", "CompileProgress"]
