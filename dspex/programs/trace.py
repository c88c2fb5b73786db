"""The predictor calls made inside one top-level program call, collected by a scope (a ``contextvars``
value: right across threads that copy their context and asyncio tasks; no process-wide global).

``Module.__call__`` opens the scope when no call is in progress, so a user's module that calls two
predictors and returns the last ``Prediction`` still hands back every step, with its usage and cost
(what optimizers bootstrap demos from). Each step names its predictor by the stable dotted name
``named_predictors()`` gives it in the program that opened the scope.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..primitives import Usage


@dataclass(frozen=True)
class TraceStep:
    """One predictor call: its dotted name, inputs and outputs, what it cost, and what went over the wire:
    the messages sent (the first request's; a re-ask after a parse failure adds to them) and the raw
    answer its outputs were parsed from."""

    predictor: str
    inputs: dict
    outputs: dict
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    model: str = ""  # the LM's "provider/model"
    messages: tuple = ()  # the adapter's messages (held, not copied: the ones the request was built from)
    raw: str = ""


@dataclass
class _Scope:
    names: dict[int, str]  # id(predictor) -> dotted name in the scope's program
    steps: list[TraceStep] = field(default_factory=list)


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("dspex_trace", default=None)


def in_scope() -> bool:
    return _SCOPE.get() is not None


@contextmanager
def collect(program: Any) -> Iterator[list[TraceStep]]:
    """Collect the steps of the predictor calls made in this block (by this thread and the threads it
    starts with its context)."""
    scope = _Scope({id(p): name for name, p in program.named_predictors()})
    token = _SCOPE.set(scope)
    try:
        yield scope.steps
    finally:
        _SCOPE.reset(token)


def step_name(predictor: Any) -> str:
    """The predictor's dotted name in the program being traced; outside any scope it is a program of its
    own, named ``"self"`` as ``named_predictors()`` names it; in a scope it is not part of, its class name."""
    scope = _SCOPE.get()
    if scope is None:
        return "self"
    return scope.names.get(id(predictor), type(predictor).__name__)


def record(step: TraceStep) -> None:
    scope = _SCOPE.get()
    if scope is not None:
        scope.steps.append(step)


__all__ = ["TraceStep", "collect", "record", "step_name", "in_scope"]
