"""An LM as saved data (DSPy's ``lm.dump_state()`` / ``BaseLM.load_state(state)``), and back.

A saved LM is a dict of constructor settings plus the class that made it under ``LM_CLASS_STATE_KEY``
(DSPy's ``"_dspy_lm_class"``). Never an API key: the key comes from the environment when the LM is
rebuilt. Loading reads data:

* a state without a class, or with the class of DSPy's or dspex's built-in LM, becomes a ``dspex.LM``;
* any other class (a user's ``BaseLM`` subclass) is refused with a ValueError unless the caller opts in
  (``allow_custom_lm_class=True``; ``Predict.load_state(..., allow_unsafe_lm_state=True)``), since
  rebuilding it runs that class's code (and, opted in, may import its module);
* endpoint settings (``api_base``, ``base_url``, ``model_list``) are dropped with a warning unless the
  caller opts in: a crafted file must not send the environment's key to another server.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from typing import Any

LM_CLASS_STATE_KEY = "_dspy_lm_class"  # DSPy's key (also exported by dspex.clients.base_lm)
DSPY_LM_CLASS = "dspy.clients.lm.LM"  # what dspex.LM writes, so DSPy reads dspex's files and the reverse
BUILTIN_LM_CLASSES = frozenset({DSPY_LM_CLASS, "dspex.clients.lm.LM", "dspex.LM", "dspy.LM"})
UNSAFE_LM_STATE_KEYS = frozenset({"api_base", "base_url", "model_list"})
DSPY_ONLY_KEYS = ("finetuning_model", "launch_kwargs", "train_kwargs", "use_developer_role")
NEVER_LOADED = ("api_key",)

logger = logging.getLogger("dspex.predict.predict")


def sanitize_lm_state(state: dict, allow_unsafe: bool, log: logging.Logger | None = None) -> dict:
    """``state`` without its endpoint overrides (warned about) unless ``allow_unsafe``; never an api_key."""
    state = {k: v for k, v in state.items() if k not in NEVER_LOADED}
    if allow_unsafe:
        return state
    unsafe = sorted(UNSAFE_LM_STATE_KEYS.intersection(state))
    if not unsafe:
        return state
    (log or logger).warning("Ignoring unsafe LM config key(s) during state load: %s. Pass "
                            "allow_unsafe_lm_state=True to preserve these keys for trusted files.", unsafe)
    return {k: v for k, v in state.items() if k not in UNSAFE_LM_STATE_KEYS}


def dump_lm_state(lm: Any) -> dict | None:
    """``lm.dump_state()`` when it has one; else None (a state holds data only)."""
    dump = getattr(lm, "dump_state", None)
    if lm is None or dump is None:
        return None
    return dump()


def lm_from_state(state: Any, lm_class: type, base_class: type, *, allow_custom_lm_class: bool = False) -> Any:
    """The LM a saved state describes (see the module docstring); ``lm_class`` is ``dspex.LM`` and
    ``base_class`` ``dspex.BaseLM`` (passed in: this module sits under both)."""
    from ..errors import ConfigError

    LM, BaseLM = lm_class, base_class  # noqa: N806 - class names
    if not isinstance(state, dict):
        raise ConfigError(f"a saved LM must be an object (lm.dump_state()), got {type(state).__name__}")
    state = dict(state)
    class_path = state.pop(LM_CLASS_STATE_KEY, None)
    if class_path is None or class_path in BUILTIN_LM_CLASSES:
        return LM.load_state(state)
    if not isinstance(class_path, str):
        raise ConfigError(f"a saved LM's {LM_CLASS_STATE_KEY} must be a 'module.Class' string, got {class_path!r}")
    if not allow_custom_lm_class:
        raise ValueError(f"Refusing to import custom serialized LM class `{class_path}`. Pass "
                         "allow_unsafe_lm_state=True when loading trusted files to enable custom LM classes.")
    cls = _lm_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, LM)):
        raise TypeError(f"Serialized LM class `{class_path}` must be a subclass of dspex.BaseLM.")
    if cls is BaseLM:
        return cls(**state)
    load = cls.load_state
    if "allow_custom_lm_class" in inspect.signature(load).parameters:
        return load(state, allow_custom_lm_class=allow_custom_lm_class)
    return load(state)


def _lm_class(path: str) -> Any:
    """``package.module.Outer.Inner``: the longest prefix that names a module (imported already, else
    imported now: the caller opted in), then attributes down to the class."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
        obj: Any = module
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise ImportError(f"cannot find the serialized LM class `{path}`")


def dump_lm(lm: Any, builtin: bool) -> dict:
    """``dspex.LM``'s saved form, DSPy's keys: model, model_type, cache, num_retries, the sampling settings
    (temperature, max_tokens, extra parameters), DSPy's training settings (empty), ``api_base`` when the
    endpoint is not the provider's default, and the class (DSPy's ``dspy.clients.lm.LM`` for dspex.LM
    itself, so either library reads the file). Never the key; dspex's client limits are not saved."""
    from .config import DEFAULT_BASE_URL

    cfg = lm.config
    cls = type(lm)
    state: dict[str, Any] = {
        LM_CLASS_STATE_KEY: DSPY_LM_CLASS if builtin else f"{cls.__module__}.{cls.__qualname__}",
        "model": cfg.qualified, "model_type": "chat", "cache": cfg.cache, "num_retries": cfg.retries,
        "temperature": cfg.temperature, "max_tokens": cfg.max_tokens,
        **{k: v for k, v in cfg.params if k not in NEVER_LOADED and k != LM_CLASS_STATE_KEY},
        "finetuning_model": None, "launch_kwargs": {}, "train_kwargs": {}}
    if cfg.provider != "local" and cfg.base_url != DEFAULT_BASE_URL.get(cfg.provider):
        state["api_base"] = cfg.base_url
    return state


def lm_kwargs_from_state(state: dict) -> dict:
    """A DSPy LM state as ``dspex.LM`` keyword arguments: DSPy-only training settings are dropped (when
    empty; otherwise a warning), ``max_completion_tokens`` reads as ``max_tokens``, ``api_base`` as
    ``base_url``; ``model_list`` (litellm routing) is not supported and is dropped with a warning."""
    state = {k: v for k, v in state.items() if k not in NEVER_LOADED and k != LM_CLASS_STATE_KEY}
    for key in DSPY_ONLY_KEYS:
        value = state.pop(key, None)
        if value not in (None, {}, [], False):
            logger.warning("Ignoring saved LM setting %s=%r: dspex.LM does not use it.", key, value)
    if "max_completion_tokens" in state:
        value = state.pop("max_completion_tokens")
        state.setdefault("max_tokens", value)
    if "model_list" in state:
        state.pop("model_list")
        logger.warning("Ignoring saved LM setting model_list: dspex.LM does not route between deployments.")
    if "api_base" in state and "base_url" not in state:
        state["base_url"] = state.pop("api_base")
    elif "api_base" in state:
        state.pop("api_base")
    if state.get("model_type", "chat") == "chat":
        state.pop("model_type", None)
    return state


__all__ = ["LM_CLASS_STATE_KEY", "UNSAFE_LM_STATE_KEYS", "BUILTIN_LM_CLASSES", "sanitize_lm_state", "dump_lm_state",
           "lm_from_state", "lm_kwargs_from_state", "dump_lm"]
