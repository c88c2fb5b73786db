"""``dspex.LM``: a cheap, picklable handle to a client actor; it runs the HTTP in the caller's process."""

from __future__ import annotations

import contextvars
import os
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError
from ..providers import PROVIDERS
from .access import provider_access
from .config import AUTO, Breaker, LMConfig, Secret, base_url_for, check_sampling, parse_model, resolve_key
from .host import current_runtime, open_runtimes
from .messages import ClientStatus, Completion, Flush, GetStatus, GetUsage, InjectFaults, ResetBreaker, UsageTotals
from .pipeline import Pipeline, Request
from .prices import Price, check_price
from .scope import current_run, current_stream
from ..utils.callback import with_callbacks

if TYPE_CHECKING:
    from .host import ClientHost as Runtime


PYTHON_ENDPOINT = "http://python.invalid"  # names a Python-answered client (providers.py): nothing is sent there
# set while a subclass's own __call__ runs: its super().__call__ requests go to the pipeline, not back to it
_ROUTED: contextvars.ContextVar[list | None] = contextvars.ContextVar("dspex_lm_own_call", default=None)


def answers_itself(cls: type) -> bool:
    """Whether an LM class overrides ``__call__`` (DSPy's adapters call ``lm(messages=...)``, so DSPy users
    subclass the LM and answer there): dspex then routes every request of a program through that method."""
    return cls.__call__ is not LM.__call__


class NoProvider:
    """The transport of a self-answering LM subclass named without a provider (``SpyLM("dummy_model")``):
    reached only when its ``super().__call__`` would send a request, which needs a provider."""

    def __init__(self, model: str) -> None:
        self.model = model

    def attempt(self, messages: list[dict], params: dict, on_text: Any) -> Any:
        raise ConfigError(f"{self.model!r} names no provider, so this LM cannot send a request: name the model as "
                          "'provider/model' (e.g. 'openai/gpt-4o-mini'), or answer in your subclass's __call__ "
                          "without calling super().__call__")

    def scrub(self, text: str) -> str:
        return text

    def close(self) -> None:
        """Nothing to close."""


DEFAULT_IN_FLIGHT = 64  # requests of one client in flight at once, unless max_in_flight= says otherwise
LOCAL_IN_FLIGHT = 2  # a local model's: one answered, one waiting, so its server never idles between requests


class LM:
    """A language model behind the resilient client pipeline.

    ``dspex.LM("openai/gpt-4o-mini")`` finds or starts the client actor for that provider, model and
    endpoint in the current :func:`dspex.runtime` (or ``runtime=``). The key comes from ``api_key`` or
    the provider's environment variable and stays in this process: ``repr`` and pickles never hold it.
    Extra keyword arguments are sampling parameters sent with every request (e.g. ``top_p=0.9``).
    """

    _callback_kind = "lm"  # each request fires the lm hooks (dspex.utils.callback)

    def __init__(self, model: str, api_key: str | Secret | None = None, base_url: str | None = None, *,
                 temperature: float = 0.0, max_tokens: int = 512, timeout: float = 30.0,
                 rpm: float | None | str = AUTO, tpm: float | None | str = AUTO, max_in_flight: int | None = None,
                 retries: int = 5,
                 breaker: Breaker | None = None, cache: bool = True, budget_usd: float | None = None,
                 budget_tokens: int | None = None, backoff_base: float = 0.5, backoff_cap: float = 20.0,
                 price: Price | None = None, name: str | None = None, runtime: "Runtime | None" = None,
                 api_base: str | None = None, extra_headers: dict[str, str] | None = None,
                 api_version: str | None = None, hedge: float | str | None = AUTO, **params: Any) -> None:
        self.callbacks = list(params.pop("callbacks", None) or [])  # this handle's own (dspex.utils.callback)
        params = _framework_options(params)
        if "num_retries" in params:  # DSPy's name
            retries = params.pop("num_retries")
        if api_base is not None:  # DSPy's and litellm's name for it
            if base_url is not None and base_url != api_base:
                raise ConfigError("pass base_url= or api_base= (the same setting), not both")
            base_url = api_base
        if answers_itself(type(self)) and isinstance(model, str) and "/" not in model:
            # a subclass that answers in its own __call__ (DSPy test doubles: SpyLM("dummy_model")) needs no
            # provider until its super().__call__ sends something: then the NoProvider transport says so
            self._init_self_answering(model, runtime, params)
            return
        provider, model_name = parse_model(model)
        if provider == "python":
            raise ConfigError(f"{model!r}: 'python/' models are dspex.BaseLM subclasses: subclass dspex.BaseLM "
                              "and implement forward(prompt=None, messages=None, **kwargs)")
        if provider == "colbert":
            raise ConfigError(f"{model!r}: a ColBERT server is a retriever, not an LM: use "
                              "dspex.ColBERTv2(url=...) (e.g. as dspex.configure(rm=...))")
        if provider == "embeddings":
            raise ConfigError(f"{model!r}: an embeddings API is not an LM: use dspex.Embedder('openai/<model>', "
                              "base_url=...)")
        access = provider_access(provider, api_key, params)  # bedrock/'s AWS options, vertex_ai/'s, ...
        api_key, region, self._credential_parts = access.api_key, access.region, access.parts
        if extra_headers is not None and not isinstance(extra_headers, dict):
            raise ConfigError(f"extra_headers must be a dict of header name -> value, got {type(extra_headers).__name__}")
        rt = runtime or current_runtime()
        if provider == "local":  # the runtime starts (or finds) the model's server process; it sets no limits
            rpm = None if rpm == AUTO else rpm
            tpm = None if tpm == AUTO else tpm
            # a local model that times out is slow (a busy machine), not down: its breaker ignores timeouts
            breaker = breaker or Breaker(count_timeouts=False)
            base_url = base_url or rt.local_model_url(model_name)
            # the model server answers one request at a time: more in flight would only queue at its lock,
            # where each one's timeout ticks (a compile's 16 parallel calls timed out there); here they
            # queue in the client actor's admission, which no timeout bounds
            max_in_flight = LOCAL_IN_FLIGHT if max_in_flight is None else max_in_flight
        max_in_flight = DEFAULT_IN_FLIGHT if max_in_flight is None else max_in_flight
        self.config = LMConfig(provider=provider, model=model_name, base_url=base_url_for(provider, base_url, region),
                               temperature=temperature, max_tokens=max_tokens, timeout=timeout, rpm=rpm, tpm=tpm,
                               max_in_flight=max_in_flight, retries=retries, breaker=breaker or Breaker(), cache=cache,
                               budget_usd=budget_usd, budget_tokens=budget_tokens, backoff_base=backoff_base,
                               backoff_cap=backoff_cap, params=tuple(sorted(params.items())), name=name,
                               headers=tuple(sorted((extra_headers or {}).items())),
                               api_version=api_version or (os.environ.get("AZURE_API_VERSION") or None
                                                           if provider == "azure" else None), region=region,
                               project=access.project, hedge=hedge)
        self.price = check_price(price) if price is not None else None
        self._key = resolve_key(provider, api_key, getattr(rt, "settings", None))
        self._token = secrets.token_hex(8)  # names this handle's key in its runtime (never the key itself)
        self._runtime: Runtime | None = None
        self._pipeline: Pipeline | None = None
        self.bind(rt)

    def _init_self_answering(self, model: str, runtime: "Runtime | None", params: dict) -> None:
        cls = type(self)
        self.config = LMConfig(provider="python", model=model, base_url=f"{PYTHON_ENDPOINT}/{cls.__module__}."
                               f"{cls.__qualname__}", params=tuple(sorted(params.items())), cache=False)
        self.price, self._key, self._token = None, None, secrets.token_hex(8)
        self._runtime, self._pipeline = None, None
        self._credential_parts = []
        self.bind(runtime or current_runtime())

    # --- binding -----------------------------------------------------------------------------------

    def bind(self, runtime: "Runtime") -> "LM":
        """Attach to ``runtime`` (after unpickling): find or start the client actor there. A handle
        unpickled in the process that made it gets its key back from that runtime (never from the pickle)."""
        runtime.client_ref(self.config, self.price)  # started now; other limits for this client: ConfigError
        engines = runtime.engines
        if self.config.provider == "python":  # a self-answering subclass: nothing behind it to send to
            self._runtime = runtime
            self._pipeline = engines.pipeline(self.config, None, self.price, transport=NoProvider(self.config.model),
                                              owner=self)
            return self
        if self._key is None:
            self._key = engines.key_for(self._token) or resolve_key(self.config.provider, None)
        engines.remember_key(self._token, self._key)
        self._runtime = runtime
        self._pipeline = engines.pipeline(self.config, self._key, self.price)
        return self

    def _need_runtime(self) -> "Runtime":
        if self._runtime is None:
            self._rebind()
        return self._runtime  # type: ignore[return-value]

    def _need_pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._rebind()
        return self._pipeline  # type: ignore[return-value]

    def _rebind(self) -> None:
        """An unpickled handle binds on first use: to the open runtime that made it (same process, key
        and all), else to the only open runtime (key from the environment)."""
        runtimes = open_runtimes()
        home = [rt for rt in runtimes if rt.engines.knows_token(self._token)]
        if home:
            self.bind(home[-1])
        elif len(runtimes) == 1:
            self.bind(runtimes[0])
        else:
            found = "no dspex runtime is open" if not runtimes else f"{len(runtimes)} runtimes are open"
            raise ConfigError(f"{self!r} is not bound to a runtime (it was unpickled, or its runtime closed) and "
                              f"{found}: call lm.bind(rt) inside `with dspex.runtime() as rt:`")

    @property
    def model(self) -> str:
        """``provider/model``; a self-answering subclass's model as it was named."""
        return self.config.model if self.config.provider == "python" else self.config.qualified

    @property
    def supports_function_calling(self) -> bool:
        """Whether the adapters may ask this model for native tool calls (every provider's API but a local
        model's has them; dspex.clients.wire renders tools in each format)."""
        return self.config.provider != "local"

    @property
    def kwargs(self) -> dict[str, Any]:
        """DSPy's ``lm.kwargs``: the request options this handle sends with every request (a copy; sampling
        defaults and the options given at construction)."""
        return self.config.sampling()

    @property
    def supports_reasoning(self) -> bool:
        """Whether the model thinks natively and returns its thinking (the provider registry's list): a
        ``dspex.Reasoning`` output is then the model's own thinking, asked for with ``reasoning_effort``."""
        spec = PROVIDERS.get(self.config.provider)
        return spec is not None and spec.reasons(self.config.model)

    @property
    def default_adapter(self) -> str:
        """The adapter a program uses with this LM when given none: small local models follow plain
        ``Field: value`` completion prompts far better than chat markers (benchmarks/README.md)."""
        return "TextAdapter" if self.config.provider == "local" else "ChatAdapter"

    # --- requests ----------------------------------------------------------------------------------

    @with_callbacks
    def request(self, messages: Sequence[dict] | str, *, run: str | None = None, rollout: int | None = None,
                prompt_style: str = "chat", **overrides: Any) -> Completion:
        """Send a chat request through the pipeline; raises a typed :class:`~dspex.errors.LMError`.

        ``rollout`` tells apart deliberate repeats of one prompt (BestOfN, MultiChainComparison): it is
        part of the cache key and never sent. ``prompt_style`` ("chat" | "completion", from the adapter)
        tells a local model whether to apply its chat template; providers never see it. ``overrides``
        are sampling parameters for this request.
        """
        if _ROUTED.get() is None and answers_itself(type(self)):
            return self._through_own_call(messages, overrides)
        return self._routed(self._need_pipeline().send(self._request_of(messages, run, rollout, prompt_style,
                                                                         overrides)))

    @with_callbacks
    async def arequest(self, messages: Sequence[dict] | str, *, run: str | None = None, rollout: int | None = None,
                       prompt_style: str = "chat", **overrides: Any) -> Completion:
        """:meth:`request` for async code: a task on the runtime's event loop (aiohttp; the same leases,
        retries, cache and ledger), not a thread. A subclass that answers in its own ``__call__`` is
        called on a thread."""
        import asyncio

        if _ROUTED.get() is None and answers_itself(type(self)):
            return await asyncio.to_thread(self._through_own_call, messages, overrides)
        return self._routed(await self._need_pipeline().asend(self._request_of(messages, run, rollout,
                                                                                prompt_style, overrides)))

    def _request_of(self, messages: Sequence[dict] | str, run: str | None, rollout: int | None, prompt_style: str,
                    overrides: dict) -> Request:
        cfg = self.config
        msgs = normalize_messages(messages)
        rollout_id = overrides.pop("rollout_id", None)  # DSPy's name: part of the cache key, never sent
        check_sampling(overrides, f"LM {cfg.qualified} request")  # before anything is leased
        sampling = {**cfg.sampling(), **overrides}
        if cfg.provider == "local":
            sampling.setdefault("prompt_format", "raw" if prompt_style == "completion" else "chat")
        return Request(cfg, msgs, sampling, run=run if run is not None else current_run(),
                       rollout=rollout if rollout is not None else rollout_id, stream=current_stream(),
                       given=messages, overrides=overrides)

    @staticmethod
    def _routed(comp: Completion) -> Completion:
        routed = _ROUTED.get()
        if routed is not None:
            routed.append(comp)
        return comp

    def _through_own_call(self, messages: Sequence[dict] | str, overrides: dict) -> Completion:
        """A request answered by the subclass's own ``__call__``: what its ``super().__call__`` got from the
        pipeline, else what it returned (not leased, not booked: it never reached the client)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        answered: list[Completion] = []  # what its super().__call__ got from the pipeline
        token = _ROUTED.set(answered)
        try:
            outputs = self(messages=messages, **overrides)
        finally:
            _ROUTED.reset(token)
        if answered:
            return answered[-1]
        first = outputs[0] if isinstance(outputs, list) and outputs else outputs
        return Completion.unbilled(first if isinstance(first, dict) else str(first or ""), str(self.model))

    def __call__(self, prompt: str | Sequence[dict] | None = None, messages: Sequence[dict] | None = None,
                 **overrides: Any) -> list[str | dict]:
        """DSPy's ``lm(prompt)`` / ``lm(messages=[...])``: the list of completions (one, or ``n=``; each
        through the whole pipeline, told apart in the cache by its rollout): their texts, or, when any
        carries ``logprobs`` or ``tool_calls`` (asked for with ``logprobs=True`` / ``tools=[...]``), a
        dict per completion with ``text`` and those, as DSPy gives them."""
        ask, each = self._asks(prompt, messages, overrides)
        return self._outputs([self.request(ask, **o) for o in each])

    async def acall(self, prompt: str | Sequence[dict] | None = None, messages: Sequence[dict] | None = None,
                    **overrides: Any) -> list[str | dict]:
        """DSPy's ``await lm.acall(...)``: the same list as ``lm(...)``, its requests tasks on the runtime's
        event loop (``n`` of them at once for ``n=``)."""
        import asyncio

        if answers_itself(type(self)):  # the subclass's own __call__ answers: on a thread, as it is sync
            return await asyncio.to_thread(self.__call__, prompt, messages, **overrides)
        ask, each = self._asks(prompt, messages, overrides)
        return self._outputs(list(await asyncio.gather(*(self.arequest(ask, **o) for o in each))))

    @staticmethod
    def _asks(prompt: str | Sequence[dict] | None, messages: Sequence[dict] | None,
              overrides: dict) -> tuple[Any, list[dict]]:
        """What ``lm(...)`` asks (the prompt or messages) and each completion's request options."""
        if (prompt is None) == (messages is None):
            raise ConfigError("call the LM with a prompt string, lm('...'), or with messages=[{'role': 'user', "
                              "'content': '...'}], not both")
        n = overrides.pop("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n must be an int >= 1 (how many completions), got {n!r}")
        ask = prompt if prompt is not None else messages
        if n == 1:
            return ask, [overrides]
        base = int(overrides.pop("rollout", 0) or overrides.pop("rollout_id", 0) or 0)
        return ask, [{**overrides, "rollout": base * n + i} for i in range(n)]

    @staticmethod
    def _outputs(comps: list[Completion]) -> list[str | dict]:
        if any(c.extras for c in comps):
            return [{"text": c.text, **dict(c.extras)} for c in comps]
        return [c.text for c in comps]

    # --- state -------------------------------------------------------------------------------------

    @property
    def history(self) -> list[dict]:
        """This model's recent calls in this process (bounded; messages and answers, never keys)."""
        return [h for h in self._need_runtime().engines.history() if h["model"] == self.model]

    def usage(self) -> UsageTotals:
        """Totals of this client (all handles), surviving client restarts: requests, tokens, cost, hits, retries."""
        self._need_runtime().engines.flush()
        return self._call(GetUsage())

    def status(self) -> ClientStatus:
        return self._call(GetStatus())

    def flush(self) -> None:
        """Wait until the ledger has every finished request of this client (from this process: sent first)."""
        self._need_runtime().engines.flush()
        self._call(Flush())

    def reset_breaker(self) -> None:
        self._call(ResetBreaker())

    def inject_faults(self, fraction: float) -> None:
        """Make the client's breaker reject ``fraction`` of requests on purpose (chaos testing)."""
        self._call(InjectFaults(fraction))

    def _call(self, message: Any) -> Any:
        return self._need_pipeline().link.call(message)

    # --- values ------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        key = "***" if self._key is not None else "none"
        return f"LM({self.model!r}, base_url={self.config.base_url!r}, api_key={key})"

    def __getstate__(self) -> dict:
        return {"config": self.config, "price": self.price, "token": self._token}

    def __setstate__(self, state: dict) -> None:
        self.config, self.price = state["config"], state["price"]
        self._token = state.get("token") or secrets.token_hex(8)
        self._key = None
        self._credential_parts = []
        self._runtime = None
        self._pipeline = None

    def copy(self, **overrides: Any) -> "LM":
        """Another handle of the same client (same actor, limits, budget and key) with other per-request
        settings: ``temperature``, ``max_tokens``, ``retries`` (or DSPy's ``num_retries``) or sampling
        parameters (optimizers sample at 1.0)."""
        if "num_retries" in overrides:  # DSPy's name
            overrides = {**{k: v for k, v in overrides.items() if k != "num_retries"},
                         "retries": overrides["num_retries"]}
        allowed = {"temperature", "max_tokens", "retries"}
        fields = {k: v for k, v in overrides.items() if k in allowed}
        params = {**dict(self.config.params), **{k: v for k, v in overrides.items() if k not in allowed}}
        limits = {"rpm", "tpm", "max_in_flight", "timeout", "breaker", "budget_usd", "budget_tokens",
                  "backoff_base", "backoff_cap", "cache", "name", "base_url"}
        if limits & set(params):
            raise ConfigError(f"lm.copy changes per-request settings only; {sorted(limits & set(params))} belong to "
                              "the client: make another dspex.LM(..., name=...) for other limits")
        clone = object.__new__(LM)
        clone.config = replace(self.config, **fields, params=tuple(sorted(params.items())))
        clone.price, clone._key, clone._token = self.price, self._key, secrets.token_hex(8)
        clone._credential_parts = self._credential_parts
        clone._runtime, clone._pipeline = None, None
        if self._runtime is not None:
            clone.bind(self._runtime)
        return clone

    def dump_state(self) -> dict[str, Any]:
        """DSPy's saved form of an LM (never the key; see :mod:`dspex.clients.lm_state`)."""
        from .lm_state import dump_lm

        return dump_lm(self, builtin=type(self) is LM)

    @classmethod
    def load_state(cls, state: dict[str, Any], *, allow_custom_lm_class: bool = False) -> "LM":
        """An LM of this class from DSPy's saved form (the saved class name is not used: ``dspex.BaseLM.
        load_state`` is the one that picks the class); the key comes from the environment."""
        from .lm_state import lm_kwargs_from_state

        if not isinstance(state, dict):
            raise ConfigError(f"a saved LM must be an object (lm.dump_state()), got {type(state).__name__}")
        return cls(**lm_kwargs_from_state(state))

    def __copy__(self) -> "LM":
        return self

    def __deepcopy__(self, memo: dict) -> "LM":
        """A handle is a reference to a client actor: copies of a program share it (and its key)."""
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LM) and other.config == self.config and other.price == self.price

    def __hash__(self) -> int:
        return hash(self.config)


def _framework_options(params: dict) -> dict:
    """DSPy/litellm options that are about the framework, not the request body: understood here, never sent."""
    params = dict(params)
    model_type = params.pop("model_type", "chat")
    if model_type != "chat":
        raise ConfigError(f"model_type={model_type!r}: dspex speaks chat APIs (chat completions, messages, "
                          "generateContent); use model_type='chat' or leave it out")
    for name in ("rollout_id", "finetuning_model", "launch_kwargs", "train_kwargs"):
        if name in params:
            raise ConfigError(f"dspex.LM does not take {name}= at construction"
                              + ("; pass rollout_id= per call (program(..., config={'rollout_id': 1}))"
                                 if name == "rollout_id" else ""))
    return params


def normalize_messages(messages: Sequence[dict] | str) -> list[dict]:
    """Check chat messages (a plain string is one user message); a clear ConfigError names the bad item.

    A content is a string or a list of content parts (text, ``image_url``, ``input_audio``, ``file``; an
    Anthropic ``document``); an assistant message may carry ``tool_calls`` and a ``role: "tool"`` message
    answers one (``tool_call_id``), in the chat-completions shape: each wire format renders them as its
    provider's (``wire.check_message``)."""
    from .wire import check_message

    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = [check_message(m, i) for i, m in enumerate(messages)]
    if not out:
        raise ConfigError("messages is empty: pass at least one {'role': 'user', 'content': ...}")
    return out


__all__ = ["LM", "normalize_messages"]
