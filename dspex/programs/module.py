"""Module: the base of every program. Plain, picklable values; the LM is passed in, never global.

A module's predictors are found by walking its attributes (sub-modules, and lists / tuples / dicts
of them) in definition order, which gives stable names such as ``answer`` or ``steps[1].predict``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import pickle
import logging
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from ..primitives import Example, Prediction, Usage
from ..utils.callback import with_callbacks
from ..utils.parallelizer import ParallelExecutor
from ..utils.syncify import awaited_from
from . import trace

FORMAT_VERSION = 2  # 2: DSPy's shape (state per predictor name at the top, and ``metadata``); 1 had ``state``
READS_FORMATS = (1, 2)
DSPY_COMPATIBLE = "3.4.1"  # the DSPy release whose saved files dspex writes and reads
# dspex's own keys beside DSPy's per-predictor state (``dspex_config``, not ``config``: a lone predictor's
# state has a ``config`` of its own)
_NOT_STATE = ("dspex_format", "class", "dspex_config", "metadata")
logger = logging.getLogger("dspex.primitives.base_module")  # DSPy's logger name, re-exported there
INIT_ARGS = "_dspex_init_args"  # where a module keeps the __init__ arguments it was built with
PICKLE_MAGIC = b"DSPEX-PICKLE\n"  # a whole-program pickle starts with this line


def own_aforward(module: Any) -> Any:
    """``module.aforward`` when it is the async twin of the ``forward`` in force, else None (a subclass that
    overrides only ``forward`` — of ``Predict``, say — is not bypassed by the ``aforward`` it inherits)."""
    own = vars(module)
    if "forward" in own or "aforward" in own:
        return own.get("aforward")
    return module.aforward if _class_aforward(type(module)) else None


@functools.lru_cache(maxsize=1024)  # (bounded: classes made on the fly are not kept alive)
def _class_aforward(cls: type) -> bool:
    """``cls`` has an ``aforward`` defined at or below the class that defines its ``forward`` (worked out once
    per class: every async call asks)."""
    forward = next((c for c in cls.__mro__ if "forward" in c.__dict__), None)
    aforward = next((c for c in cls.__mro__ if "aforward" in c.__dict__), None)
    return aforward is not None and (forward is None or issubclass(aforward, forward))


def call_now(step: tuple) -> Any:
    """Perform a module's ``("call", module, inputs)`` step on this thread (``module(**inputs)``)."""
    match step:
        case ("call", module, inputs):
            return module(**inputs)
    raise TypeError(f"dspex bug: unknown module step {step!r}")


async def call_later(step: tuple) -> Any:
    """Perform a module's ``("call", module, inputs)`` step on the event loop (``await module.acall(**inputs)``)."""
    match step:
        case ("call", module, inputs):
            return await module.acall(**inputs)
    raise TypeError(f"dspex bug: unknown module step {step!r}")


class Module:
    """Subclass it, set sub-modules in ``__init__``, implement ``forward(**inputs) -> Prediction``."""

    _compiled: bool = False  # set on a program an optimizer returned (DSPy's flag)
    _callback_kind = "module"  # which hooks its calls fire (dspex.utils.callback)

    def __init__(self, callbacks: list | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A user's ``__init__`` arguments are remembered (when they are plain data) so that ``save`` /
        ``dspex.load`` rebuild the module with them, not with the defaults."""
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if callable(forward) and not getattr(forward, "_dspex_warning", False) and cls.__module__.split(".")[0] != "dspex":
            cls.forward = _warn_if_called_directly(forward)  # type: ignore[method-assign]
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_dspex_recording", False):
            return

        @functools.wraps(init)
        def recording(self: Any, *args: Any, **kw: Any) -> None:
            if INIT_ARGS not in vars(self):  # the outermost __init__ of the instance's class records
                try:
                    bound = inspect.signature(init).bind(self, *args, **kw)
                    bound.apply_defaults()
                    values = {k: v for k, v in list(bound.arguments.items())[1:]}
                    json.dumps(values)
                    vars(self)[INIT_ARGS] = values
                except (TypeError, ValueError):
                    vars(self)[INIT_ARGS] = None  # not plain data (an LM, a module): load needs them passed
            init(self, *args, **kw)

        recording._dspex_recording = True  # type: ignore[attr-defined]
        cls.__init__ = recording  # type: ignore[method-assign]

    @with_callbacks
    def __call__(self, *args: Any, **inputs: Any) -> Prediction:
        """``forward``; a top-level call collects every predictor call made inside it, so the result's
        trace, usage and cost cover them all (a user's module may return just its last Prediction)."""
        return self._run(*args, **inputs)

    def _run(self, *args: Any, **inputs: Any) -> Prediction:
        if trace.in_scope() or isinstance(self, Predictor):  # a lone predictor's result is its own trace
            return self.forward(*args, **inputs)
        with trace.collect(self) as steps:
            result = self.forward(*args, **inputs)
        return _totalled(result, steps)

    def forward(self, **inputs: Any) -> Prediction:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(**inputs)")

    @with_callbacks
    async def acall(self, *args: Any, **inputs: Any) -> Prediction:
        """Async twin: ``aforward`` when the module defines one, else the call in a worker thread (the
        client actors provide the concurrency; the caller's context goes along)."""
        import asyncio

        aforward = own_aforward(self)
        if aforward is not None:
            if trace.in_scope() or isinstance(self, Predictor):  # as _run: a lone predictor's trace is its own
                return await aforward(*args, **inputs)
            with trace.collect(self) as steps:
                result = await aforward(*args, **inputs)
            return _totalled(result, steps)
        with awaited_from(asyncio.get_running_loop()):
            return await asyncio.to_thread(self._run, *args, **inputs)

    def batch(self, examples: Any, num_threads: int | None = None, max_errors: int | None = None,
              return_failed_examples: bool = False, provide_traceback: bool | None = None,
              disable_progress_bar: bool = False, timeout: float = 120.0, straggler_limit: int = 3) -> Any:
        """Run on many examples concurrently (DSPy's ``Module.batch``, on its ``ParallelExecutor``): one
        result per example, in order (None for a failed one). ``max_errors`` failures (default: the
        ``max_errors`` setting) stop the run with ``ExecutionCancelled``; with ``return_failed_examples``,
        also the failed examples and their errors. (Scoring, journals and worker processes are
        ``dspex.Evaluate``'s.)"""
        items = list(examples)
        executor = ParallelExecutor(num_threads=num_threads, max_errors=max_errors,
                                    disable_progress_bar=disable_progress_bar, provide_traceback=provide_traceback,
                                    timeout=timeout, straggler_limit=straggler_limit)

        def one(item: Any) -> Any:
            return self(**(item.inputs() if isinstance(item, Example) else item))

        results = executor.execute(one, items)
        if return_failed_examples:
            failed = sorted(executor.failed_indices)
            return results, [items[i] for i in failed], [executor.exceptions_map.get(i) for i in failed]
        return results

    # --- the tree ----------------------------------------------------------------------------------

    def named_sub_modules(self, type_: type | None = None, skip_compiled: bool = False
                          ) -> Iterator[tuple[str, "Module"]]:
        """DSPy's walk: this module as ``"self"``, then every module below it breadth-first, named by its
        path (``self.sub``, ``self.steps[0]``, ``self.tools[key]``); each once, however often reachable.
        ``type_`` keeps only instances of it; ``skip_compiled`` does not look inside compiled modules."""
        type_ = type_ or Module
        seen: set[int] = set()
        queue: list[tuple[str, Any]] = [("self", self)]
        while queue:
            name, value = queue.pop(0)
            if isinstance(value, Module):
                if id(value) in seen:
                    continue
                seen.add(id(value))
                if isinstance(value, type_):
                    yield name, value
                if skip_compiled and getattr(value, "_compiled", False):
                    continue
                queue.extend((f"{name}.{k}", v) for k, v in vars(value).items() if k != INIT_ARGS)
            elif isinstance(value, (list, tuple)):
                queue.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
            elif isinstance(value, dict):
                queue.extend((f"{name}[{k}]", v) for k, v in value.items())

    def named_predictors(self) -> list[tuple[str, "Predictor"]]:
        """Every predictor in the tree with a stable dotted name (``answer``, ``hop.predict1``,
        ``steps[1]``; a lone predictor is ``self``): the names its saved state is keyed by."""
        found = [("self", self)] if isinstance(self, Predictor) else []
        seen = {id(self)}
        for name, value in vars(self).items():
            if name != INIT_ARGS:
                found += [(n, m) for n, m in _walk(value, name, seen) if isinstance(m, Predictor)]
        return found

    def named_parameters(self) -> list[tuple[str, "Predictor"]]:
        """DSPy's name for :meth:`named_predictors` (a predictor is what an optimizer tunes)."""
        return self.named_predictors()

    def parameters(self) -> list["Predictor"]:
        return [p for _, p in self.named_predictors()]

    def predictors(self) -> list["Predictor"]:
        return [p for _, p in self.named_predictors()]

    def map_named_predictors(self, func: Any) -> "Module":
        """Replace each predictor ``p`` by ``func(p)`` in place (DSPy's); returns self."""
        for name, predictor in self.named_predictors():
            if name == "self":
                raise ConfigError("map_named_predictors replaces predictors inside a module, not the module itself")
            set_attribute_by_name(self, name, func(predictor))
        return self

    def get_lm(self) -> Any:
        """The LM every predictor uses (ConfigError when they use different ones)."""
        lms = {id(p.lm): p.lm for p in self.predictors()}
        if len(lms) > 1:
            raise ConfigError("Multiple LMs are being used in the module. There's no unique LM to return.")
        return next(iter(lms.values()), None)

    def set_lm(self, lm: Any) -> "Module":
        """Use ``lm`` for every predictor in the tree (returns self)."""
        for p in self.predictors():
            p.lm = lm
        return self

    def deepcopy(self) -> "Module":
        """An independent copy; LM handles are shared (they are references to client actors). As DSPy's:
        an attribute that cannot be deep-copied (a lock) is copied shallowly, or shared, with a warning;
        sub-modules are still copied deeply."""
        try:
            return copy.deepcopy(self)
        except (TypeError, copy.Error, pickle.PicklingError):  # an attribute refuses: attribute by attribute
            fresh = type(self).__new__(type(self))
        for name, value in vars(self).items():
            if isinstance(value, Module):
                vars(fresh)[name] = value.deepcopy()
                continue
            try:
                vars(fresh)[name] = copy.deepcopy(value)
            except (TypeError, copy.Error, pickle.PicklingError):
                logger.warning(f"Failed to deep copy attribute '{name}' of {type(self).__name__}, falling back "
                               "to shallow copy or reference copy.")
                try:
                    vars(fresh)[name] = copy.copy(value)
                except (TypeError, copy.Error, pickle.PicklingError):
                    vars(fresh)[name] = value
        return fresh

    def reset_copy(self) -> "Module":
        """A copy with every predictor's demos cleared (what optimizers start from)."""
        fresh = self.deepcopy()
        for p in fresh.predictors():
            p.demos = []
        return fresh

    # --- saving ------------------------------------------------------------------------------------

    def dump_state(self) -> dict:
        return {name: p.dump_state() for name, p in self.named_predictors()}

    def load_state(self, state: dict, *, allow_unsafe_lm_state: bool = False) -> "Module":
        """Each predictor's saved state, all or nothing (``allow_unsafe_lm_state``: a saved LM of a custom
        class, or its endpoint, is used: only for files you trust)."""
        names = dict(self.named_predictors())
        if not isinstance(state, dict):
            raise ConfigError(f"a saved program's state must be an object, got {type(state).__name__}")
        missing = set(names) - set(state)
        if missing:
            raise MissingState(f"the saved program has no state for predictors {sorted(missing)}: "
                               "it was saved from a different program")
        before = {name: copy.copy(vars(p)) for name, p in names.items()}
        try:
            for name, p in names.items():
                if allow_unsafe_lm_state:
                    p.load_state(state[name], allow_unsafe_lm_state=True)
                else:
                    p.load_state(state[name])
        except BaseException:  # all or nothing: every predictor as it was
            for name, p in names.items():
                vars(p).clear()
                vars(p).update(before[name])
            raise
        return self

    def save(self, path: str | Path, save_program: bool = False, modules_to_serialize: list | None = None) -> None:
        """DSPy's file: each predictor's state under its name, and ``metadata`` (dependency versions); dspex
        adds the program class and constructor config (for ``dspex.load``). Never an API key. A path ending
        in ``.pkl`` pickles that state (cloudpickle, as DSPy does). ``save_program=True`` pickles the whole
        program into the directory ``path`` (``program.pkl`` and ``metadata.json``, as DSPy's; a path with a
        suffix gets one file); ``modules_to_serialize`` are pickled by value. Loading a pickle runs code,
        so it needs ``allow_pickle=True``."""
        path = Path(path)
        metadata = {"dependency_versions": get_dependency_versions(), "dspex": _dspex_version()}
        if save_program:
            import cloudpickle

            for module in modules_to_serialize or ():
                cloudpickle.register_pickle_by_value(module)
            try:
                if path.suffix and not path.is_dir():  # dspex's one-file form
                    path.write_bytes(PICKLE_MAGIC + cloudpickle.dumps(self))  # LM handles pickle without keys
                    return
                path.mkdir(parents=True, exist_ok=True)
                (path / "program.pkl").write_bytes(cloudpickle.dumps(self))
                (path / "metadata.json").write_text(json.dumps(metadata, indent=2))
            finally:
                for module in modules_to_serialize or ():
                    cloudpickle.unregister_pickle_by_value(module)
            return
        state = dict(self.dump_state())
        state["metadata"] = metadata
        if path.suffix == ".pkl":
            import cloudpickle

            path.write_bytes(cloudpickle.dumps(state))
            return
        cls = type(self)
        doc = {**state, "dspex_format": FORMAT_VERSION, "class": f"{cls.__module__}:{cls.__qualname__}",
               "dspex_config": self.dump_config()}
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))

    def load(self, path: str | Path, allow_pickle: bool = False, *, allow_unsafe_lm_state: bool = False) -> "Module":
        """Load a saved program's state (demos, signatures, adapters) into this one (DSPy's state-only way):
        a file dspex or DSPy saved (JSON, or with ``allow_pickle=True`` a ``.pkl``); dependency versions
        that differ from the saver's are logged. A predictor missing from the file is a KeyError (a
        ConfigError too) and nothing is changed."""
        path = Path(path)
        if path.suffix == ".pkl":
            if not allow_pickle:
                raise ConfigError(f"{path} is a pickle: loading it runs code; pass allow_pickle=True if you "
                                  "trust the file")
            import cloudpickle

            logger.warning(f"Loading untrusted .pkl files can run arbitrary code, which may be dangerous: "
                           f"{path}. Only load .pkl files from sources you trust; prefer .json.")
            doc = cloudpickle.loads(path.read_bytes())
            if not isinstance(doc, dict):
                raise ConfigError(f"{path} does not hold a saved program's state")
        else:
            doc = _read_saved(path, dspy_ok=True)
        _check_versions(doc.get("metadata"))
        return self.load_state(saved_state(doc), allow_unsafe_lm_state=allow_unsafe_lm_state)

    def dump_config(self) -> dict | None:
        """Constructor arguments for ``dspex.load``: the ones ``__init__`` was given, when plain data."""
        return vars(self).get(INIT_ARGS)

    @classmethod
    def from_config(cls, config: dict | None) -> "Module":
        try:
            return cls() if config is None else cls(**config)
        except TypeError as exc:
            raise ConfigError(f"cannot rebuild {cls.__name__} from the saved file ({exc}): its __init__ takes "
                              f"arguments that are not plain data; build it yourself and call program.load(path)") from None



def _warn_if_called_directly(forward: Any) -> Any:
    """A user's ``forward`` that logs DSPy's warning when user code calls it itself (not through the
    module's call, another forward, or dspex)."""

    @functools.wraps(forward)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if (caller.f_code.co_name not in ("__call__", "_run", "forward", "aforward", "acall")
                and not str(caller.f_globals.get("__name__", "")).startswith("dspex")):
            logger.warning(f"Calling module.forward(...) on {type(self).__name__} directly is discouraged. "
                           "Please use module(...) instead.")
        return forward(self, *args, **kwargs)

    checked._dspex_warning = True  # type: ignore[attr-defined]
    return checked


class Predictor(Module):
    """A module that calls an LM itself (``Predict`` and its kin): what optimizers tune. It has an
    ``lm``, ``demos`` and ``dump_state`` / ``load_state``; LM handles copy as themselves."""

    lm: Any
    demos: list


def _walk(value: Any, name: str, seen: set) -> Iterator[tuple[str, Module]]:
    """Modules under ``value`` (depth-first, attribute order), named by their path from the walk's root."""
    if isinstance(value, Module):
        if id(value) in seen:
            return
        seen.add(id(value))
        yield name, value
        for key, item in vars(value).items():
            if key != INIT_ARGS:
                yield from _walk(item, f"{name}.{key}", seen)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{name}[{i}]", seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{name}[{key!r}]", seen)


_PATH_STEP = re.compile(r"""\.?([A-Za-z_]\w*)|\[\s*(-?\d+)\s*\]|\[\s*(['"]?)([^\]'"]*)\3\s*\]""")


def set_attribute_by_name(obj: Any, name: str, value: Any) -> None:
    """Set what the path ``name`` names below ``obj`` (``sub.items[0]['key'].lm``), DSPy's helper for
    :meth:`Module.map_named_predictors`; a ConfigError names a path that does not parse or lead anywhere."""
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(name):
        m = _PATH_STEP.match(name, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"set_attribute_by_name: cannot read the path {name!r} at {name[pos:]!r}")
        attr, index, _, key = m.groups()
        steps.append(("attr", attr) if attr is not None else ("item", int(index)) if index is not None
                     else ("item", key))
        pos = m.end()
    if not steps:
        raise ConfigError("set_attribute_by_name: the path is empty")
    target = obj
    try:
        for kind, step in steps[:-1]:
            target = getattr(target, step) if kind == "attr" else target[step]
        kind, step = steps[-1]
        if kind == "attr":
            setattr(target, step, value)
        else:
            target[step] = value
    except (AttributeError, KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"set_attribute_by_name: {name!r} does not lead to a settable place ({exc})") from None


def _totalled(result: Any, steps: list) -> Any:
    if not isinstance(result, Prediction) or not steps:
        return result
    usage = sum((s.usage for s in steps), Usage())
    return Prediction(dict(result.items()), usage=usage, cost=sum(s.cost for s in steps), raw=result.raw,
                      trace=steps, completions=result.completions)


class MissingState(ConfigError, KeyError):
    """A saved program lacks the state of one of the program's predictors (DSPy raises KeyError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _read_saved(path: str | Path, dspy_ok: bool = False) -> dict:
    """The saved document; with ``dspy_ok`` a file DSPy wrote (no ``dspex_format``) is read too."""
    try:
        raw = Path(path).read_bytes()
        if raw.startswith(PICKLE_MAGIC):
            raise ConfigError(f"{path} is a whole-program pickle (save_program=True): loading it runs code; "
                              "use dspex.load(path, allow_pickle=True) if you trust the file")
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read a saved program from {path}: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a saved program (not a JSON object)")
    if "dspex_format" not in doc:
        if dspy_ok:
            return doc
        raise ConfigError(f"{path} is not a saved dspex program (no 'dspex_format' field): a file DSPy saved "
                          "loads into a program you build, with program.load(path)")
    if doc["dspex_format"] not in READS_FORMATS:
        raise ConfigError(f"{path} has format {doc['dspex_format']!r}; this dspex reads formats "
                          f"{', '.join(map(str, READS_FORMATS))}")
    return doc


def saved_state(doc: dict) -> dict:
    """The per-predictor state of a saved document: dspex's format 1 kept it under ``state``; DSPy's shape
    (and dspex's format 2) has it at the top beside ``metadata``."""
    if doc.get("dspex_format") == 1:
        return doc.get("state")  # type: ignore[return-value]
    return {k: v for k, v in doc.items() if k not in _NOT_STATE}


def get_dependency_versions() -> dict:
    """DSPy's ``metadata.dependency_versions``: python, dspy (the DSPy release dspex is compatible with)
    and cloudpickle, as ``major.minor``."""
    try:
        import cloudpickle

        pickle_version = ".".join(cloudpickle.__version__.split(".")[:2])
    except ImportError:  # pragma: no cover
        pickle_version = None
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "dspy": DSPY_COMPATIBLE,
            "cloudpickle": pickle_version}


def _dspex_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dspex")
    except PackageNotFoundError:  # not installed as a distribution
        return None


def _check_versions(metadata: Any) -> None:
    saved = metadata.get("dependency_versions") if isinstance(metadata, dict) else None
    if not isinstance(saved, dict):
        return
    current = get_dependency_versions()
    for key, version in saved.items():
        if key in current and current[key] != version:
            logger.warning(f"There is a mismatch of {key} version between saved model and current environment. "
                           f"You saved with `{key}=={version}`, but now you have `{key}=={current[key]}`. This "
                           "might cause errors or performance downgrade on the loaded model, please consider "
                           "loading the model in the same environment as the saving environment.")


def load(path: str | Path, lm: Any = None, allow_pickle: bool = False) -> Module:
    """Rebuild a saved program; attach ``lm`` if given. Loading reads data only: the program's class
    is looked up among modules already imported (never imported on the file's word) and must be a
    Module; anything else is a ConfigError naming what was refused. A whole-program pickle
    (``save(..., save_program=True)``) loads only with ``allow_pickle=True``: it runs code."""
    if allow_pickle:
        import cloudpickle

        if Path(path).is_dir():  # save(dir, save_program=True): DSPy's layout
            metadata = json.loads((Path(path) / "metadata.json").read_text()) if (Path(path) / "metadata.json").exists() else {}
            _check_versions(metadata)
            program = cloudpickle.loads((Path(path) / "program.pkl").read_bytes())
            if not isinstance(program, Module):
                raise ConfigError(f"{path} holds a {type(program).__name__}, not a dspex Module")
            return program.set_lm(lm) if lm is not None else program
        raw = Path(path).read_bytes()
        if raw.startswith(PICKLE_MAGIC):
            program = cloudpickle.loads(raw[len(PICKLE_MAGIC):])
            if not isinstance(program, Module):
                raise ConfigError(f"{path} holds a {type(program).__name__}, not a dspex Module")
            return program.set_lm(lm) if lm is not None else program
    doc = _read_saved(path)
    cls = program_class(doc.get("class"))
    config = doc.get("config") if doc.get("dspex_format") == 1 else doc.get("dspex_config")
    state = saved_state(doc)
    if not (config is None or isinstance(config, dict)) or not isinstance(state, dict):
        raise ConfigError(f"{path}: 'config' must be an object or null and 'state' an object")
    try:
        program = cls.from_config(config).load_state(state)
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path} is corrupt or from an incompatible program: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from None
    return program.set_lm(lm) if lm is not None else program


def program_class(name: Any) -> type[Module]:
    """``module:Class`` from a saved file, resolved without importing anything: the module must be
    imported already (dspex's own always are) and the class a Module subclass."""
    obj = imported_object(name, "the saved program's class")
    if not (isinstance(obj, type) and issubclass(obj, Module)):
        raise ConfigError(f"the saved program's class {name} is not a dspex Module: refused")
    return obj


def imported_object(path: Any, what: str) -> Any:
    """``module:Qualified.name`` looked up in a module that is already imported (a saved file never
    makes dspex import anything); ConfigError says what to do otherwise. None if the name is absent."""
    import sys

    if not isinstance(path, str) or path.count(":") != 1:
        raise ConfigError(f"{what} must be 'module:Class', got {path!r}")
    module_name, qualname = path.split(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise ConfigError(f"{what} {path} is in {module_name!r}, which is not imported: import the module that "
                          "defines it first (dspex.load never imports modules named in a file)")
    obj: Any = module
    for part in qualname.split("."):
        obj = vars(obj).get(part) if hasattr(obj, "__dict__") else None
    return obj


def combine(predictions: list[Prediction], **outputs: Any) -> Prediction:
    """A Prediction with ``outputs`` whose usage, cost and trace add up those of ``predictions``."""
    usage, cost, trace = Usage(), 0.0, []
    for p in predictions:
        usage, cost = usage + p.usage, cost + p.cost
        trace.extend(p.trace)
    raw = predictions[-1].raw if predictions else ""
    return Prediction(outputs, usage=usage, cost=cost, raw=raw, trace=trace)


__all__ = ["Module", "Predictor", "load", "combine", "set_attribute_by_name", "FORMAT_VERSION", "MissingState",
           "get_dependency_versions", "logger"]
