"""``dspex.BaseLM``: DSPy's subclassable LM, run through dspex's client pipeline.

A DSPy user's own LM subclasses ``BaseLM`` and implements ``forward(prompt=None, messages=None, **kwargs)``
returning an OpenAI-shaped response (``choices[i].message.content`` / ``.tool_calls`` /
``.reasoning_content``, ``usage.prompt_tokens`` / ``completion_tokens``, ``model``; objects or dicts).
In dspex that ``forward`` is the *transport* of an ordinary client: each call takes a lease of the client
actor (its limits, breaker and budget), its usage is booked in the ledger (at the handle's ``price``, zero
when none is given) and it appears in ``lm.history`` and ``dspex.inspect_history``. Everything DSPy's
``BaseLM`` offers its subclasses is here: ``model``, ``model_type``, ``cache``, ``kwargs``, ``history``,
``__call__`` returning DSPy's list, ``acall``, ``copy``, ``dump_state``.

Deliberate differences: a ``forward`` that raises is not retried unless ``num_retries`` is given (DSPy's
``BaseLM`` never retries) and its exception reaches the caller unchanged; ``cache=True`` is recorded, as
DSPy's ``BaseLM`` does, and caches nothing (only ``dspex.LM`` caches provider answers).
"""

from __future__ import annotations

import contextvars
import copy as copy_module
import secrets
import time
import weakref
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError, MalformedResponse
from ..primitives import Usage
from ..utils.callback import with_callbacks
from .config import Breaker, LMConfig
from .host import current_runtime
from .lm import _ROUTED, LM, PYTHON_ENDPOINT, answers_itself
from .messages import Completion
from .pipeline import Request, history_entry
from .scope import current_run, current_stream
from .prices import Price, check_price
from .transport import AttemptKind, AttemptResult

if TYPE_CHECKING:
    from .host import ClientHost as Runtime

LM_CLASS_STATE_KEY = "_dspy_lm_class"  # DSPy's key for the class of a saved LM


def _read(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: responses come as objects (OpenAI's SDK) or dicts."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def response_outputs(response: Any) -> tuple[str, tuple[tuple[str, Any], ...], int, int, str]:
    """(text, extras, prompt tokens, completion tokens, model) of an OpenAI-shaped response's first choice;
    ``MalformedResponse`` when it has no choices."""
    choices = _read(response, "choices")
    if not choices:
        raise MalformedResponse(f"forward() returned {type(response).__name__} without choices: return an "
                                "OpenAI-shaped response (choices=[{message: {content: ...}}], usage=..., model=...)")
    message = _read(choices[0], "message") or {}
    text = _read(message, "content") or ""
    extras = []
    for name in ("tool_calls", "reasoning_content", "logprobs", "citations"):
        value = _read(message, name) if name != "logprobs" else _read(choices[0], name)
        if value:
            extras.append((name, value))
    usage = _read(response, "usage") or {}
    return (str(text), tuple(extras), int(_read(usage, "prompt_tokens", 0) or 0),
            int(_read(usage, "completion_tokens", 0) or 0), str(_read(response, "model", "") or ""))


class ForwardTransport:
    """A BaseLM's ``forward`` as a client's transport: one attempt is one call (see the module docstring)."""

    def __init__(self, lm: "BaseLM") -> None:
        self._lm = weakref.ref(lm)  # the engines keep the pipeline; the handle keeps itself alive

    def attempt(self, messages: list[dict], params: dict, on_text: Any) -> AttemptResult:
        lm = self._lm()
        if lm is None:
            raise ConfigError("this BaseLM was garbage-collected while its request was in flight")
        start = time.monotonic()
        response = lm.forward(messages=messages, **params)
        text, extras, prompt_tokens, completion_tokens, model = response_outputs(response)
        return AttemptResult(AttemptKind.OK, time.monotonic() - start, text=text, prompt_tokens=prompt_tokens,
                             completion_tokens=completion_tokens, model=model, extras=extras)

    def scrub(self, text: str) -> str:
        return text

    def close(self) -> None:
        """Nothing to close: no connection pool."""


class BaseLM(LM):
    """Subclass and implement :meth:`forward` (see the module docstring)."""

    model: Any = None  # DSPy's plain attributes, per instance (shadowing LM's properties)
    history: Any = None
    kwargs: Any = None

    def __init__(self, model: str, model_type: str = "chat", temperature: float = 0.0, max_tokens: int = 1000,
                 cache: bool = True, *, num_retries: int = 0, rpm: float | None = None, tpm: float | None = None,
                 max_in_flight: int = 64, timeout: float = 600.0, breaker: Breaker | None = None,
                 budget_usd: float | None = None, budget_tokens: int | None = None, price: Price | None = None,
                 runtime: "Runtime | None" = None, callbacks: list | None = None, **kwargs: Any) -> None:
        self.callbacks = list(callbacks or [])
        if model_type not in ("chat", "text", "responses"):
            raise ConfigError(f"model_type must be 'chat', 'text' or 'responses', got {model_type!r}")
        self.model = model
        self.model_type = model_type
        self.cache = cache
        self.num_retries = num_retries
        self.kwargs = dict(temperature=temperature, max_tokens=max_tokens, **kwargs)
        self.history = []
        cls = type(self)
        self.config = LMConfig(provider="python", model=str(model or cls.__name__),
                               base_url=f"{PYTHON_ENDPOINT}/{cls.__module__}.{cls.__qualname__}",
                               temperature=temperature, max_tokens=max_tokens, timeout=timeout, rpm=rpm, tpm=tpm,
                               max_in_flight=max_in_flight, retries=num_retries,
                               breaker=breaker or Breaker(count_timeouts=False), cache=False, budget_usd=budget_usd,
                               budget_tokens=budget_tokens)
        self.price = check_price(price) if price is not None else None
        self._key = None
        self._token = secrets.token_hex(8)
        self._runtime = None
        self._pipeline = None
        self.bind(runtime or current_runtime())

    # --- what a subclass implements ----------------------------------------------------------------

    def forward(self, prompt: str | None = None, messages: list[dict] | None = None, **kwargs: Any) -> Any:
        """One call of the model: an OpenAI-shaped response (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(prompt=None, messages=None, "
                                  "**kwargs) returning an OpenAI-shaped response")

    async def aforward(self, prompt: str | None = None, messages: list[dict] | None = None, **kwargs: Any) -> Any:
        return self.forward(prompt=prompt, messages=messages, **kwargs)

    @property
    def supports_function_calling(self) -> bool:
        return False

    @property
    def supports_reasoning(self) -> bool:
        return False

    @property
    def supports_response_schema(self) -> bool:
        return False

    @property
    def supported_params(self) -> set[str]:
        return set()

    # --- the client side ---------------------------------------------------------------------------

    def bind(self, runtime: "Runtime") -> "BaseLM":
        runtime.client_ref(self.config, self.price)
        self._runtime = runtime
        self._pipeline = runtime.engines.pipeline(self.config, None, self.price, transport=ForwardTransport(self),
                                                  owner=self)
        return self

    def _rebind(self) -> None:
        self.bind(current_runtime())

    @with_callbacks
    def request(self, messages: Sequence[dict] | str, *, run: str | None = None, rollout: int | None = None,
                prompt_style: str = "chat", **overrides: Any) -> Completion:
        """As :meth:`LM.request`; the messages and keyword arguments reach ``forward`` as given (with the
        handle's ``kwargs`` under them): what they may hold is the subclass's business.

        A subclass that overrides ``__call__`` sees every request there, as DSPy's adapters call
        ``lm(messages=...)``: its ``super().__call__`` goes on through the pipeline, and what it returns
        without one is the answer (not leased, not booked: it never reached the client)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        routed = _ROUTED.get()
        if routed is None and answers_itself(type(self)):
            return self._through_own_call(messages, overrides)
        rollout_id = overrides.pop("rollout_id", None)
        request = Request(self.config, list(messages), {**self.kwargs, **overrides},
                          run=run if run is not None else current_run(),
                          rollout=rollout if rollout is not None else rollout_id, stream=current_stream(),
                          given=messages, overrides=overrides)
        comp = self._need_pipeline().send(request)
        self.history.append(history_entry(request, comp))
        if routed is not None:
            routed.append(comp)
        return comp

    @property
    def default_adapter(self) -> str:
        return "ChatAdapter"

    # --- values ------------------------------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        """DSPy's saved form: model, model_type, cache, num_retries, the sampling kwargs and the class path
        (never a key: an ``api_key`` kwarg is left out)."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in ("api_key", LM_CLASS_STATE_KEY)}
        return {"model": self.model, "model_type": self.model_type, "cache": self.cache,
                "num_retries": self.num_retries, **kwargs,
                LM_CLASS_STATE_KEY: f"{type(self).__module__}.{type(self).__qualname__}"}

    @classmethod
    def load_state(cls, state: dict[str, Any], *, allow_custom_lm_class: bool = False) -> "LM":
        """DSPy's ``BaseLM.load_state``: on ``BaseLM`` itself, the LM a saved state names (a ``dspex.LM`` for
        DSPy's or dspex's built-in class or none; another class only with ``allow_custom_lm_class=True``,
        else a ValueError); on a subclass, ``cls(**state)``."""
        if cls is BaseLM:
            from .lm_state import lm_from_state

            return lm_from_state(state, LM, BaseLM, allow_custom_lm_class=allow_custom_lm_class)
        state = {k: v for k, v in dict(state).items() if k not in (LM_CLASS_STATE_KEY, "api_key")}
        return cls(**state)

    def copy(self, **kwargs: Any) -> "BaseLM":
        """A copy with other settings (DSPy's ``lm.copy(temperature=...)``): attributes it has are set,
        anything else goes to ``kwargs``; its history starts empty."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_runtime", "_pipeline", "history")}
        clone = object.__new__(type(self))
        clone.__dict__.update(copy_module.deepcopy(state))
        clone.history = []
        clone._token = secrets.token_hex(8)
        for key, value in kwargs.items():
            if key in ("model", "model_type", "cache", "num_retries"):
                setattr(clone, key, value)
            elif value is None:
                clone.kwargs.pop(key, None)
            else:
                clone.kwargs[key] = value
        clone._runtime, clone._pipeline = None, None
        clone.bind(self._runtime or current_runtime())
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_runtime", "_pipeline", "_key")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._key, self._runtime, self._pipeline = None, None, None

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)


__all__ = ["BaseLM", "ForwardTransport", "LM_CLASS_STATE_KEY", "response_outputs"]
