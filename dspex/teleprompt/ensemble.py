"""Ensemble: one program that calls several programs and reduces their outputs (DSPy's ``Ensemble``).

The member programs of a call run at once, each on a thread of its own carrying the caller's context
(``dspex.context``, the runtime, callbacks), so an ensemble of five LM programs takes about as long as
its slowest member, not the sum (DSPy calls them one after another). ``deterministic=True`` picks the
``size`` members of a call from a digest of its inputs: the same inputs always meet the same members,
so an evaluation of an ensemble is repeatable (DSPy refuses ``deterministic=True``).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..programs import Module
from .base import Teleprompter


class EnsembledProgram(Module):
    """Calls ``size`` of ``programs`` (all of them when ``size`` is None) with the same arguments and
    returns ``reduce_fn(outputs)``, or the list of outputs in the members' order without a ``reduce_fn``."""

    def __init__(self, programs: Sequence[Any], reduce_fn: Callable[[list], Any] | None = None,
                 size: int | None = None, deterministic: bool = False) -> None:
        super().__init__()
        self.programs = list(programs)
        self.reduce_fn, self.size, self.deterministic = reduce_fn, size, deterministic
        self._rng = random.Random()

    def members(self, args: tuple, kwargs: dict) -> list[Any]:
        """The programs this call runs: all, a random ``size`` of them, or (deterministic) the ``size``
        drawn with the digest of the call's arguments as the seed."""
        if not self.size or self.size >= len(self.programs):
            return list(self.programs)
        if not self.deterministic:
            return self._rng.sample(self.programs, self.size)
        text = json.dumps([list(args), kwargs], sort_keys=True, default=repr)
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        return random.Random(seed).sample(self.programs, self.size)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        chosen = self.members(args, kwargs)
        if len(chosen) <= 1:
            outputs = [program(*args, **kwargs) for program in chosen]
        else:
            with ThreadPoolExecutor(len(chosen), thread_name_prefix="ensemble") as pool:
                futures = [pool.submit(contextvars.copy_context().run, program, *args, **kwargs)
                           for program in chosen]
                outputs = [future.result() for future in futures]  # the first member's error, if any, raises
        return self.reduce_fn(outputs) if self.reduce_fn is not None else outputs


class Ensemble(Teleprompter):
    """``Ensemble(reduce_fn=dspex.majority, size=3).compile(programs)`` → an :class:`EnsembledProgram`.
    Nothing is called at compile time, so there is nothing to journal or budget."""

    def __init__(self, *, reduce_fn: Callable[[list], Any] | None = None, size: int | None = None,
                 deterministic: bool = False) -> None:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ConfigError(f"Ensemble: size must be a positive int or None, got {size!r}")
        if reduce_fn is not None and not callable(reduce_fn):
            raise ConfigError(f"Ensemble: reduce_fn must be callable (e.g. dspex.majority), got {reduce_fn!r}")
        self.reduce_fn, self.size, self.deterministic = reduce_fn, size, deterministic

    def compile(self, programs: Sequence[Any]) -> EnsembledProgram:  # type: ignore[override] - DSPy's signature
        """One program over ``programs`` (each a Module or any callable)."""
        programs = list(programs)
        if not programs:
            raise ConfigError("Ensemble.compile needs at least one program")
        if self.size is not None and self.size > len(programs):
            raise ConfigError(f"Ensemble: size={self.size} but only {len(programs)} programs were given")
        return EnsembledProgram(programs, self.reduce_fn, self.size, self.deterministic)


__all__ = ["Ensemble", "EnsembledProgram"]
