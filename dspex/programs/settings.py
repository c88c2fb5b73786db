"""DSPy's configuration habits without a process-wide mutable global.

``dspex.configure(lm=..., adapter=...)`` sets the defaults of the innermost open runtime (the
process's default runtime if none is open); ``with dspex.context(lm=..., adapter=...):`` overrides them
for one block: a ``contextvars`` value, so it is right across threads that copy their context and
asyncio tasks. A predictor's own ``lm=`` / ``adapter=`` always wins. A program shipped to worker
processes carries the LM it resolved here (``with_resolved_lms``).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator

from ..clients.host import current_runtime, existing_runtime
from ..errors import ConfigError

KEYS = ("lm", "adapter")
INSTEAD = {
    "track_usage": "usage is always tracked: read prediction.usage / prediction.cost or lm.usage()",
    "num_threads": "pass max_concurrency= to dspex.Evaluate (or num_threads=, its DSPy name)",
    "cache": "pass cache=False to dspex.LM(...)",
    "rm": "pass the retriever to your module explicitly",
    "trace": "a top-level module call collects its own trace (prediction.trace)",
    "async_max_workers": "async calls share the LM's client actor; set max_in_flight= on dspex.LM",
}
_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("dspex_context", default={})


def _checked(settings: dict) -> dict:
    for key in settings:
        if key not in KEYS:
            hint = INSTEAD.get(key, f"dspex understands {', '.join(KEYS)}")
            raise ConfigError(f"dspex.configure/context: {key!r} is not a dspex setting: {hint}")
    lm = settings.get("lm")
    if isinstance(lm, str):
        from ..clients import LM

        settings = {**settings, "lm": LM(lm)}
    return settings


def configure(**settings: Any) -> None:
    """Defaults for programs run in the innermost open runtime (or the process's default one)."""
    current_runtime().defaults.update(_checked(settings))


@contextmanager
def context(**settings: Any) -> Iterator[None]:
    """Override the defaults inside this block (this thread / task and what it starts with its context)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **_checked(settings)})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def setting(key: str) -> Any:
    """The value in force: the innermost ``context``, then the runtime's ``configure``, else None."""
    scoped = _CONTEXT.get()
    if key in scoped:
        return scoped[key]
    rt = existing_runtime()  # asking never starts a runtime (a worker process has none of its own)
    return rt.defaults.get(key) if rt is not None else None


def resolve_lm(lm: Any, owner: str) -> Any:
    """A predictor's LM: its own (a handle, or a ``"provider/model"`` string), else the one in force."""
    if lm is None:
        lm = setting("lm")
    if lm is None:
        raise ConfigError(f"{owner} has no LM: pass lm=, call program.set_lm(lm), or "
                          "dspex.configure(lm=dspex.LM('openai/gpt-4o-mini'))")
    if isinstance(lm, str):
        from ..clients import LM

        return LM(lm)
    if not callable(getattr(lm, "request", None)):
        raise ConfigError(f"{owner}: lm must be a dspex.LM or a 'provider/model' string, got {type(lm).__name__}")
    return lm


def with_resolved_lms(program: Any) -> Any:
    """A copy of ``program`` whose predictors hold the LM in force now (for worker processes, where
    this process's context and runtime defaults do not exist); the program itself if nothing is missing."""
    missing = [p for p in program.predictors() if p.lm is None or isinstance(p.lm, str)]
    if not missing:
        return program
    copy = program.deepcopy()
    for predictor in copy.predictors():
        predictor.lm = resolve_lm(predictor.lm, repr(predictor))
    return copy


__all__ = ["configure", "context", "setting", "resolve_lm", "with_resolved_lms"]
