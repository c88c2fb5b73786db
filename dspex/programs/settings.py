"""DSPy's configuration habits without a process-wide mutable global.

``dspex.configure(lm=..., adapter=...)`` sets the defaults of the innermost open runtime (the
process's default runtime if none is open); ``with dspex.context(lm=..., adapter=...):`` overrides them
for one block: a ``contextvars`` value, so it is right across threads that copy their context and
asyncio tasks. A predictor's own ``lm=`` / ``adapter=`` always wins. A program shipped to worker
processes carries the LM it resolved here (``with_resolved_lms``).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
import copy
from contextlib import contextmanager
from typing import Any, Iterator

from ..clients.host import current_runtime, existing_runtime
from ..errors import ConfigError, LMNotConfigured
from ..utils.callback_context import set_settings_reader

# DSPy's settings and their defaults (``dspy.dsp.utils.settings.DEFAULT_CONFIG``): every key is accepted.
DEFAULTS: dict[str, Any] = {
    "lm": None, "adapter": None, "rm": None, "branch_idx": 0, "trace": [], "callbacks": [], "async_max_workers": 8,
    "send_stream": None, "disable_history": False, "track_usage": False, "usage_tracker": None,
    "caller_predict": None, "caller_modules": None, "stream_listeners": [], "provide_traceback": False,
    "num_threads": 8, "max_errors": 10, "allow_tool_async_sync_conversion": False, "max_history_size": 10000,
    "max_trace_size": 10000, "warn_on_type_mismatch": True,
}
# Defaults that are a runtime's own object, not a fresh copy per read: predictors append to ``trace``
SHARED_DEFAULTS = frozenset({"trace"})
# Keys dspex keeps only at their default: another value would be ignored, so it is refused with what to write.
INSTEAD = {
    "usage_tracker": "usage is always tracked: read prediction.get_lm_usage() or lm.usage()",
    "caller_predict": "it is DSPy's internal bookkeeping; dspex tracks the calling predictor itself",
    "caller_modules": "it is DSPy's internal bookkeeping; dspex tracks the calling modules itself",
    "branch_idx": "it is DSPy's internal bookkeeping; pass rollout_id= in a predictor's config for repeats",
    "send_stream": "stream with dspex.streamify(program) (it sets the stream for the call)",
    "stream_listeners": "pass stream_listeners= to dspex.streamify(program, ...)",
}
_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("dspex_context", default={})


def _checked(settings: dict) -> dict:
    for key, value in settings.items():
        if key not in DEFAULTS:
            raise ConfigError(f"dspex.configure/context: {key!r} is not a setting (known: {', '.join(DEFAULTS)})")
        if key in INSTEAD and value != DEFAULTS[key]:
            raise ConfigError(f"dspex.configure/context: {key}= is not supported: {INSTEAD[key]}")
    rm = settings.get("rm")
    if rm is not None and not callable(rm):  # what dspex.Retrieve calls: rm(query, k=...)
        raise ConfigError(f"dspex.configure/context: rm= takes a retriever, a callable rm(query, k=...) returning "
                          f"passages (e.g. dspex.retrievers.Embeddings(corpus, embedder)); got {type(rm).__name__}")
    lm = settings.get("lm")
    if isinstance(lm, str):
        from ..clients import LM

        settings = {**settings, "lm": LM(lm)}
    return settings


def configure(inherit_config: bool = True, **settings: Any) -> None:
    """Defaults for programs run in the innermost open runtime (or the process's default one), DSPy's
    ``dspy.configure``. ``inherit_config=False`` first forgets every setting made before. A setting equal
    to its default is forgotten (so resetting to the defaults starts no runtime when none runs)."""
    settings = _checked(settings)
    changed = {k: v for k, v in settings.items() if not _is_default(k, v)}
    rt = current_runtime() if changed else existing_runtime()
    if rt is None:
        return
    if not inherit_config:
        rt.defaults.clear()
    for key in settings:
        rt.defaults.pop(key, None)
    rt.defaults.update(changed)


def _is_default(key: str, value: Any) -> bool:
    default = DEFAULTS[key]
    return value is default or (type(value) is type(default) and value == default)


@contextmanager
def context(**settings: Any) -> Iterator[None]:
    """Override the defaults inside this block (this thread / task and what it starts with its context)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **_checked(settings)})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def setting(key: str) -> Any:
    """The value in force: the innermost ``context``, then the runtime's ``configure``, else DSPy's default."""
    scoped = _CONTEXT.get()
    if key in scoped:
        return scoped[key]
    rt = existing_runtime()  # asking never starts a runtime (a worker process has none of its own)
    if rt is not None and key in rt.defaults:
        return rt.defaults[key]
    if rt is not None and key in SHARED_DEFAULTS:  # the runtime's own list, that calls append to (DSPy's trace)
        return rt.defaults.setdefault(key, copy.deepcopy(DEFAULTS[key]))
    default = DEFAULTS.get(key)
    return default.copy() if isinstance(default, (list, dict)) else default  # a fresh [] each read: no sharing


class SettingsView:
    """``dspex.settings``: DSPy's settings object over :func:`configure` / :func:`context` / :func:`setting`
    (``settings.lm``, ``settings["adapter"]``, ``settings.configure(...)``, ``with settings.context(...)``).
    It holds nothing itself: values live on the runtime and in the block's context."""

    configure = staticmethod(configure)
    context = staticmethod(context)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in DEFAULTS:
            raise AttributeError(f"dspex.settings has no setting {name!r} (known: {', '.join(DEFAULTS)})")
        return setting(name)

    def __setattr__(self, name: str, value: Any) -> None:
        configure(**{name: value})

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        configure(**{key: value})

    def __contains__(self, key: object) -> bool:
        return key in DEFAULTS

    def get(self, key: str, default: Any = None) -> Any:
        return setting(key) if key in DEFAULTS else default

    def copy(self) -> dict[str, Any]:
        return {key: setting(key) for key in DEFAULTS}

    @property
    def config(self) -> dict[str, Any]:
        return self.copy()

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.copy().items() if not _is_default(k, v)}
        return f"dspex.settings({shown})"

    def save(self, path: str | Path, modules_to_serialize: list | None = None,
             exclude_keys: list[str] | None = None) -> None:
        """DSPy's ``settings.save``: the settings in force, pickled with cloudpickle (an LM goes without its
        key, as every dspex pickle does); ``modules_to_serialize`` are pickled by value. Only
        :func:`load_settings` with ``allow_pickle=True`` reads the file back."""
        import cloudpickle

        data = {k: v for k, v in self.copy().items() if k not in set(exclude_keys or ()) and not _is_default(k, v)}
        for module in modules_to_serialize or ():
            cloudpickle.register_pickle_by_value(module)
        try:
            blob = cloudpickle.dumps(data)
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same clear message
            raise ConfigError(f"dspex.settings.save: a setting cannot be pickled ({type(exc).__name__}: {exc}); "
                              "leave it out with exclude_keys=[...]") from None
        finally:
            for module in modules_to_serialize or ():
                cloudpickle.unregister_pickle_by_value(module)
        Path(path).write_bytes(blob)

    @staticmethod
    def load(path: str | Path, allow_pickle: bool = False) -> dict[str, Any]:
        """DSPy's ``settings.load``: see :func:`load_settings`."""
        return load_settings(path, allow_pickle=allow_pickle)


def load_settings(path: str | Path, allow_pickle: bool = False) -> dict[str, Any]:
    """DSPy's ``dspy.load_settings``: the settings :meth:`SettingsView.save` wrote, as a dict to pass to
    ``dspex.configure(**...)``. Unpickling can run code, so it needs ``allow_pickle=True`` (a ConfigError
    otherwise), and only files you made yourself should be loaded."""
    if not allow_pickle:
        raise ConfigError(f"load_settings({str(path)!r}) unpickles the file, which can run code: pass allow_pickle=True "
                          "for a file you saved yourself, or set the values in code with dspex.configure(...)")
    import cloudpickle

    data = cloudpickle.loads(Path(path).read_bytes())
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} does not hold saved settings (a dict), but a {type(data).__name__}")
    return data


settings = SettingsView()
set_settings_reader(setting)  # the layer below reads callbacks, num_threads ... through it


def resolve_lm(lm: Any, owner: str) -> Any:
    """A predictor's LM: its own (a handle, or a ``"provider/model"`` string), else the one in force."""
    if lm is None:
        lm = setting("lm")
    if lm is None:
        raise LMNotConfigured(f"{owner} has no LM: pass lm=, call program.set_lm(lm), or "
                          "dspex.configure(lm=dspex.LM('openai/gpt-4o-mini'))")
    if isinstance(lm, str):
        from ..clients import LM

        return LM(lm)
    from ..clients.foreign_lm import ForeignLM, is_dspex_lm

    if is_dspex_lm(lm) or isinstance(lm, ForeignLM):
        return lm
    if callable(lm):  # DSPy's duck-typed LM: lm(messages=...) -> completions
        return ForeignLM(lm)
    raise ConfigError(f"{owner}: lm must be a dspex.LM, a 'provider/model' string or an object called as "
                      f"lm(messages=[...]) that returns a list of completions, got {type(lm).__name__}")


def with_resolved_lms(program: Any) -> Any:
    """A copy of ``program`` whose predictors hold the LM in force now, and whose ``Retrieve`` steps the
    retriever (``rm``) in force, for worker processes, where this process's context and runtime defaults
    do not exist; the program itself if nothing is missing."""
    missing = [p for p in program.predictors() if p.lm is None or isinstance(p.lm, str)]
    rm = setting("rm")
    unbound = rm is not None and any(_reads_rm(m) for _, m in program.named_sub_modules())
    if not missing and not unbound:
        return program
    copy = program.deepcopy()
    for predictor in copy.predictors() if missing else ():
        predictor.lm = resolve_lm(predictor.lm, repr(predictor))
    for _, module in copy.named_sub_modules() if unbound else ():
        if _reads_rm(module):
            module.rm = rm
    return copy


def _reads_rm(module: Any) -> bool:
    """A module that calls the ``rm`` setting because it was given no retriever (``dspex.Retrieve``)."""
    return getattr(type(module), "uses_rm_setting", False) and getattr(module, "rm", None) is None


__all__ = ["configure", "context", "setting", "settings", "SettingsView", "DEFAULTS", "resolve_lm", "with_resolved_lms",
           "load_settings"]
