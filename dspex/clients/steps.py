"""Code written once as steps, driven by either engine: a generator yields each blocking step (an LM request,
a lease, an attempt) and gets its result sent back; :func:`run_steps` performs the steps on the calling
thread, :func:`arun_steps` awaits them on an event loop. An exception a step raises (Ctrl-C, a cancelled
task, a typed LMError) is thrown back into the generator at the step, so its ``try`` / ``with`` blocks
(a lease given back, a callback's end) hold on both engines. The lease steps of a request
(``pipeline.lease_steps``) and a ``Predict`` call (``Predict._steps``) are written this way.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generator

Step = tuple  # what a generator yields: its first item names the step, the performer knows the rest


def run_steps(steps: Generator[Step, Any, Any], perform: Callable[[Step], Any]) -> Any:
    """Drive ``steps`` to its return value, performing each step with ``perform`` (blocking)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as finished:
            return finished.value
        try:
            value, error = perform(step), None
        except BaseException as exc:  # thrown back in: the steps decide (release, re-raise)
            value, error = None, exc


async def arun_steps(steps: Generator[Step, Any, Any], perform: Callable[[Step], Awaitable[Any]]) -> Any:
    """``run_steps`` on the event loop: each step awaited."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as finished:
            return finished.value
        try:
            value, error = await perform(step), None
        except BaseException as exc:  # cancellation included: thrown back in, the lease goes back
            value, error = None, exc


__all__ = ["Step", "run_steps", "arun_steps"]
