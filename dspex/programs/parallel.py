"""DSPy's ``Parallel``: run many ``(module, example)`` pairs on threads, results in the pairs' order.

::

    parallel = dspex.Parallel(num_threads=4)
    results = parallel([(qa, {"question": q}) for q in questions])

An example is passed as DSPy passes it: an ``Example`` as its inputs (``module(**example.inputs())``, or
whole with ``access_examples=False``), a dict as keyword arguments, a tuple as positional ones, a list as
the pairs of a nested ``Parallel``. A failed pair's result is None; after ``max_errors`` failures the run
stops with :class:`~dspex.utils.parallelizer.ExecutionCancelled`. With ``return_failed_examples=True`` the
call returns ``(results, failed_examples, exceptions)``.

Each pair runs in a copy of the caller's context (``with dspex.context(lm=...)`` applies; called inside a
program, the pairs' predictor calls join that program's trace). Called on its own, each result is that
module's own top-level call, with its own trace, usage and cost.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExampleError
from ..primitives import Example
from ..utils.parallelizer import DEFAULT_MAX_ERRORS, DEFAULT_NUM_THREADS, ParallelExecutor
from .module import Module
from .settings import setting


class Parallel(Module):
    """Run ``(module, example)`` pairs concurrently (DSPy's ``dspy.Parallel``)."""

    def __init__(self, num_threads: int | None = None, max_errors: int | None = None, access_examples: bool = True,
                 return_failed_examples: bool = False, provide_traceback: bool | None = None,
                 disable_progress_bar: bool = False, timeout: int = 120, straggler_limit: int = 3) -> None:
        super().__init__()
        self.num_threads = num_threads or setting("num_threads") or DEFAULT_NUM_THREADS
        max_errors = setting("max_errors") if max_errors is None else max_errors
        self.max_errors = DEFAULT_MAX_ERRORS if max_errors is None else max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        # the last call's failures (each call starts afresh; the call also returns them)
        self.failed_examples: list[Any] = []
        self.exceptions: list[Exception] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``forward``: no trace scope of its own, so each pair is a top-level call (or, inside a
        program's call, part of that program's trace)."""
        return self.forward(*args, **kwargs)

    def forward(self, exec_pairs: list[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        pairs = list(exec_pairs)
        executor = ParallelExecutor(
            num_threads=num_threads if num_threads is not None else self.num_threads,
            max_errors=self.max_errors,
            provide_traceback=self.provide_traceback,
            disable_progress_bar=self.disable_progress_bar,
            timeout=self.timeout,
            straggler_limit=self.straggler_limit,
        )
        results = executor.execute(self._run_pair, pairs)
        if not self.return_failed_examples:
            return results
        failed = sorted(executor.failed_indices)
        self.failed_examples = [pairs[i][1] for i in failed]
        self.exceptions = [executor.exceptions_map[i] for i in failed]
        return results, self.failed_examples, self.exceptions

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """``aforward``, with no trace scope of its own (as ``__call__``)."""
        return await self.aforward(*args, **kwargs)

    async def aforward(self, exec_pairs: list[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        """``forward`` for async code, on a thread of the loop's pool: its pairs run on their own threads
        (``ParallelExecutor``: its error limit, stragglers and progress, as DSPy's)."""
        import asyncio

        return await asyncio.to_thread(self.forward, exec_pairs, num_threads)

    def _run_pair(self, pair: tuple[Any, Any]) -> Any:
        module, example = pair
        if isinstance(example, Example):
            return module(**example.inputs()) if self.access_examples else module(example)
        if isinstance(example, dict):
            return module(**example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return module(example)
        if isinstance(example, tuple):
            return module(*example)
        raise ExampleError(f"Parallel: an example must be an Example, a dict or a tuple (or a list of pairs for a "
                           f"nested Parallel), got {type(example).__name__}")


__all__ = ["Parallel"]
