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
    cancelled: int = 0  # examples never run because the run stopped first (not failures)
    capped: str | None = None  # a client's own max_in_flight holding requests back, when it is the bottleneck


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
    parents: tuple[int, ...] = ()  # the candidates this one was made from (GEPA's lineage)


@dataclass(frozen=True)
class CompileStep:
    """A compile scored a program: its evaluation's run (``step_run``, whose rows the dashboard can show),
    the phase and name the optimizer gave it, how many examples, the mean score (0-1; None when cut short),
    and the prompt it scored: per predictor its instructions and demos (bounded, keys masked), with a
    digest that is equal for equal prompts (one candidate scored on several minibatches and the full set)."""

    run: str
    step_run: str
    phase: str
    name: str
    examples: int
    score: float | None
    digest: str
    prompts: tuple[dict, ...] = ()


__all__ = ["EvalProgress", "RowFinished", "CompileProgress", "CompileStep"]
