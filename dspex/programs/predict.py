"""Predict and ChainOfThought: one signature, one adapter, demos, an LM; parse failures handled in steps."""

from __future__ import annotations

import logging
import types
from dataclasses import replace
from typing import Any, Generator, Literal, Mapping, Sequence, Union, get_args, get_origin

import pydantic
import structlog

from ..adapters import ADAPTERS, Adapter, ChatAdapter, JSONAdapter
from ..adapters.base import to_jsonable
from ..errors import AdapterParseError, ConfigError, SignatureError
from ..primitives import Example, Prediction, Usage
from ..signature import (NO_DEFAULT, OutputField, Signature, SignatureMeta, custom_types_of, ensure_signature,
                         make_signature)
from ..clients.base_lm import BaseLM
from ..clients.lm_state import dump_lm_state, sanitize_lm_state
from ..clients.steps import arun_steps, run_steps
from .module import Module, Predictor, imported_object
from .settings import resolve_lm, setting
from ..clients.scope import streaming
from .streaming import current_session
from .trace import TraceStep, record, step_name
from ..utils.callback import reported_as_one
from ..utils.syncify import awaited_from

log = structlog.get_logger("dspex.programs")
logger = logging.getLogger("dspex.predict.predict")  # DSPy's warnings (extra inputs, type mismatches, unsafe LM keys)
CALL_OPTIONS = ("lm", "config", "demos", "signature")  # what a call may pass besides inputs (DSPy's Predict)


class Predict(Predictor):
    """``Predict("question -> answer", lm=lm)``: format with the adapter, ask the LM, parse.

    On a parse failure: one re-ask showing the model its answer and the error, then the JSON adapter,
    then :class:`~dspex.errors.AdapterParseError` (each step logged). ``config`` holds per-call LM
    options (``temperature``, ``max_tokens``, ...). Without ``adapter=``, the LM's own preference is
    used (``lm.default_adapter``: Chat for providers, Text for small local models, measured in benchmarks/).
    """

    def __init__(self, signature: Any, lm: Any = None, adapter: Adapter | None = None,
                 demos: Sequence[Mapping[str, Any]] = (), callbacks: list | None = None, **config: Any) -> None:
        self.callbacks = list(callbacks or [])
        self.signature: SignatureMeta = ensure_signature(signature)
        self.reset()
        self.lm = lm
        self.adapter = adapter  # None: the LM's default_adapter
        self.demos = [dict(d) for d in demos]
        self.config = dict(config)
        self.history: list[dict] = []  # this predictor's LM calls (DSPy's per-module history)

    def reset(self) -> None:
        """DSPy's ``reset``: no LM of its own, no traces, no training examples, no demos."""
        self.lm = None
        self.traces: list = []
        self.train: list = []
        self.demos = []

    def update_config(self, **kwargs: Any) -> None:
        self.config = {**self.config, **kwargs}

    def get_config(self) -> dict:
        return self.config

    def _positional_error(self) -> ValueError:
        names = list(self.signature.input_fields)
        example = f"`predict({names[0]}=input_value, ...)`" if names else "`predict()`"
        return ValueError("Positional arguments are not allowed when calling `dspy.Predict`, must use keyword "
                          f"arguments that match your signature input fields: '{', '.join(names)}'. For example: "
                          f"{example}.")

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise self._positional_error()
        return super().__call__(**kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise self._positional_error()
        return await super().acall(**kwargs)

    def forward(self, **kwargs: Any) -> Prediction:
        """Answer for the signature's inputs. As DSPy's ``Predict.forward``, a call may also pass ``lm=``,
        ``config=`` (LM options), ``demos=`` and ``signature=`` for this call only (unless the signature has
        a field of that name). A keyword that is not a field of the signature is a ConfigError naming it, and
        a missing required input a SignatureError (DSPy warns about both)."""
        return run_steps(self._steps(kwargs), _request_now)

    async def aforward(self, **kwargs: Any) -> Prediction:
        """``forward`` for async code: the same steps, each LM request awaited (``lm.arequest``: a task on
        the runtime's event loop), so thousands of calls wait at once without a thread each."""
        return await arun_steps(self._steps(kwargs), _request_later)

    def _steps(self, kwargs: dict) -> Generator[tuple, Any, Prediction]:
        """One call, as steps: each LM request is yielded (``("request", lm, messages, options)``, or
        ``("requests", lm, messages, [options, ...])`` for ``n`` at once) and its completion(s) sent back."""
        inputs, sig, call = self._call_options(kwargs)
        per_call = call.get("config")
        if per_call is not None and not isinstance(per_call, dict):
            raise ConfigError(f"config= must be a dict of LM options (e.g. {{'temperature': 0.7}}), got {per_call!r}")
        per_call = dict(per_call or {})
        predicted = inputs.get("prediction")
        if ("prediction" not in sig.input_fields and isinstance(predicted, dict)
                and predicted.get("type") == "content" and "content" in predicted):
            per_call["prediction"] = inputs.pop("prediction")  # OpenAI's predicted outputs: an LM option
        inputs = self._checked_inputs(sig, inputs)
        demos = [dict(d) for d in call["demos"]] if call.get("demos") is not None else self.demos
        owner = f"{type(self).__name__}({sig.signature_string()!r})"
        # this call's LM wins over the predictor's, which wins over the context's; a call never changes the
        # predictor (a "provider/model" string is resolved to a handle each time, never stored back)
        lm = resolve_lm(call["lm"] if call.get("lm") is not None else self.lm, owner)
        options, adapter = {**self.config, **per_call}, self.adapter_for(lm)
        options.setdefault("prompt_style", adapter.prompt_style)
        n = options.pop("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n must be an int >= 1 (how many completions), got {n!r}")
        if n > 1:  # as DSPy: several completions at (near) zero temperature would all be the same
            temperature = options.get("temperature", _lm_temperature(lm))
            if temperature is None or temperature <= 0.15:
                options["temperature"] = 0.7
        adapter.check_inputs(sig, inputs)
        # the adapter's native features: tools the LM calls natively, its own reasoning; the fields they fill
        # leave the rendered signature and ``options`` gain what the request needs (tools, reasoning_effort)
        shown = adapter._call_preprocess(lm, options, sig, inputs)
        messages = adapter.format(shown, demos, inputs)
        ask = (lm, adapter, (shown, sig), demos, inputs, messages)
        session = current_session()
        if session is not None and n == 1:  # inside dspex.streamify: stream this call if a listener follows it
            sink, finish = session.sink_for(self, step_name(self))
            with streaming(sink):
                answers = [(yield from self._answer(*ask, options))]
            finish(answers[0][0])
        elif n == 1:
            answers = [(yield from self._answer(*ask, options))]
        else:
            answers = yield from self._answers(n, ask, options)
        comps = [c for _, cs in answers for c in cs]
        values = answers[0][0]
        usage, cost = sum((c.usage for c in comps), Usage()), sum(c.cost for c in comps)
        step = TraceStep(step_name(self), dict(inputs), dict(values), usage, cost, str(getattr(lm, "model", "")),
                         tuple(messages), comps[-1].text)
        record(step)
        prediction = Prediction(values, usage=usage, cost=cost, raw=comps[-1].text, trace=[step],
                                completions=[v for v, _ in answers])
        self._remember(lm, len(comps), inputs, prediction)
        return prediction

    def _remember(self, lm: Any, calls: int, inputs: dict, prediction: Prediction) -> None:
        """DSPy's bookkeeping: this call in ``dspex.settings.trace`` (bounded by ``max_trace_size``) and the
        LM calls in this predictor's ``history`` (bounded by ``max_history_size``, none when
        ``disable_history``)."""
        trace, size = setting("trace"), setting("max_trace_size") or 0
        if isinstance(trace, list) and size > 0:
            while len(trace) >= size:
                trace.pop(0)
            trace.append((self, dict(inputs), prediction))
        if setting("disable_history"):
            return
        lm_history = vars(lm).get("history") if hasattr(lm, "__dict__") else None  # a BaseLM's own list
        if isinstance(lm_history, list) and calls:
            self.history.extend(lm_history[-calls:])
        limit = setting("max_history_size")
        if isinstance(limit, int) and len(self.history) > limit:
            del self.history[:len(self.history) - limit]

    def _checked_inputs(self, sig: SignatureMeta, inputs: dict) -> dict:
        """DSPy's input handling: defaults for missing inputs that have one, a type mismatch warned about
        (``warn_on_type_mismatch``); an unknown keyword is a ConfigError."""
        for name, field in sig.input_fields.items():
            if name not in inputs and field.default is not NO_DEFAULT:
                inputs[name] = field.default
        unknown = sorted(k for k in inputs if k not in sig.fields)
        if unknown:  # dspex: a typo'd keyword is named, never silently ignored (DSPy warns and drops it)
            raise ConfigError(f"{type(self).__name__}({sig.signature_string()!r}) got {', '.join(map(repr, unknown))}"
                              f", which is not a field of its signature (inputs: {', '.join(sig.input_fields)}); "
                              f"a call also takes {', '.join(f'{o}=' for o in CALL_OPTIONS)}")
        if setting("warn_on_type_mismatch"):
            for name, field in sig.input_fields.items():
                value = inputs.get(name)
                if name not in inputs or value is None or not getattr(field, "typed", True):
                    continue
                if not value_matches_type(value, field.annotation):
                    logger.warning("Type mismatch for field '%s': expected %s based on given Signature, but the "
                                   "provided value is incompatible: %s.", name, type_name(field.annotation), value)
        return inputs

    def _call_options(self, kwargs: dict) -> tuple[dict, SignatureMeta, dict]:
        """Split a call's keywords into the signature's inputs, the signature in force and this call's options
        (lm, config, demos, signature, as DSPy's Predict takes them)."""
        if kwargs.keys().isdisjoint(CALL_OPTIONS):  # the common call: inputs only
            return kwargs, self.signature, {}
        fields = self.signature.fields
        call = {name: kwargs.pop(name) for name in CALL_OPTIONS if name in kwargs and name not in fields}
        sig = ensure_signature(call["signature"]) if call.get("signature") is not None else self.signature
        return kwargs, sig, call

    def _answers(self, n: int, ask: tuple, options: dict) -> Generator[tuple, Any, list[tuple[dict, list]]]:
        """``n`` answers: ``n`` concurrent requests, told apart in the cache by their rollout ids, reported to
        callbacks as one LM call with ``n`` completions (DSPy's), then each parsed (re-asked where it does not
        parse)."""
        lm, messages = ask[0], ask[5]
        base = int(options.pop("rollout", 0) or 0)
        each = [{**options, "rollout": base * n + i} for i in range(n)]
        with reported_as_one(lm, type(lm).request, messages, **options, n=n) as report:
            firsts = yield ("requests", lm, messages, each)
            report.outputs = [c.output() for c in firsts]
        answers = []
        for o, c in zip(each, firsts):
            answers.append((yield from self._answer(*ask, o, first=c)))
        return answers

    def _answer(self, lm: Any, adapter: Adapter, sigs: tuple[SignatureMeta, SignatureMeta], demos: list,
                inputs: dict, messages: list, options: dict,
                first: Any = None) -> Generator[tuple, Any, tuple[dict, list]]:
        """One parsed answer and the completions it took (``first``, if already asked; a re-ask, a JSON
        fallback). ``sigs``: the signature rendered (less the natively filled fields) and the one called."""
        shown, sig = sigs

        def parse(using: Adapter, comp: Any) -> Generator[tuple, Any, dict]:
            def read() -> dict:
                return using._call_postprocess(shown, sig, [comp.output()], lm, options)[0]
            if using.parse_calls_lm:  # e.g. TwoStepAdapter's extraction model: not inline on an event loop
                return (yield ("call", read))
            return read()

        comps = [first if first is not None else (yield ("request", lm, messages, options))]
        try:
            values = yield from parse(adapter, comps[-1])
        except AdapterParseError as first:
            log.info("parse_failed_reasking", signature=sig.signature_string(), reason=first.reason)
            why = first.reason or "missing fields: " + ", ".join(first.missing_fields)
            retry = [*messages, {"role": "assistant", "content": comps[-1].text},
                     {"role": "user", "content": f"Your answer could not be parsed ({why}). "
                                                 "Answer again, exactly in the required format."}]
            comps.append((yield ("request", lm, retry, options)))
            try:
                values = yield from parse(adapter, comps[-1])
            except AdapterParseError:
                if isinstance(adapter, JSONAdapter):
                    raise
                log.info("parse_failed_json_fallback", signature=sig.signature_string())
                fallback = JSONAdapter()
                comps.append((yield ("request", lm, fallback.format(shown, demos, inputs),
                                     {**options, "prompt_style": fallback.prompt_style})))
                values = yield from parse(fallback, comps[-1])  # AdapterParseError if this fails too
        return values, comps

    def adapter_for(self, lm: Any) -> Adapter:
        """The adapter in use: the one given, else the one in force (``dspex.context`` / ``configure``),
        else the LM's preference (Chat when it has none)."""
        if self.adapter is not None:
            return self.adapter
        scoped = setting("adapter")
        if scoped is not None:
            return scoped
        preferred = getattr(lm, "default_adapter", "ChatAdapter")
        return ADAPTERS.get(preferred, ChatAdapter)()

    # --- saving ------------------------------------------------------------------------------------

    def dump_config(self) -> dict:
        return {"signature": dump_signature(self.signature), "config": self.config}

    @classmethod
    def from_config(cls, config: dict | None) -> "Predict":
        if not config:
            raise ConfigError(f"{cls.__name__} needs its saved config (signature)")
        return cls(load_signature(config["signature"]), **config.get("config", {}))

    def dump_state(self) -> dict:
        """DSPy's saved form: ``traces``, ``train``, ``demos`` (JSON-able), ``signature`` (its instructions and
        each field's prefix and description) and ``lm`` (``lm.dump_state()``, never a key; None without an
        LM of its own); dspex adds ``adapter`` and ``config`` when they are set (DSPy reads them as plain
        attributes). The signature's types are not in the state: the predictor that loads it keeps its own
        (``dump_config`` holds the whole signature, for ``dspex.load``)."""
        state: dict[str, Any] = {"traces": list(self.traces), "train": list(self.train),
                                 "demos": [_jsonable(d) for d in self.demos],
                                 "signature": self.signature.dump_state(), "lm": _lm_state(self.lm)}
        if self.adapter is not None:
            state["adapter"] = self.adapter.name()
        if self.config:
            state["config"] = {k: to_jsonable(v) for k, v in self.config.items()}
        return state

    def load_state(self, state: dict, *, allow_unsafe_lm_state: bool = False) -> "Predict":
        """Load what :meth:`dump_state` wrote (or DSPy's ``Predict.dump_state``, or dspex's earlier format,
        whose ``signature`` holds the signature string). Reads data only: the signature's types stay this
        predictor's own; an LM of a custom class, or an LM endpoint override (``api_base``, ``base_url``,
        ``model_list``), loads only with ``allow_unsafe_lm_state=True`` (trusted files). Returns self."""
        if not isinstance(state, dict) or "signature" not in state:
            raise ConfigError(f"a saved predictor must be an object with a 'signature', got {type(state).__name__}")
        if "extended_signature" in state:
            raise ConfigError("this saved predictor has an 'extended_signature' (DSPy 2.5 and earlier): re-save it "
                              "with DSPy 2.6+ or dspex")
        demos, config = state.get("demos", []), state.get("config", {})
        if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos) or not isinstance(config, dict):
            raise ConfigError("a saved predictor's 'demos' must be a list of objects and its 'config' an object")
        traces, train = state.get("traces", []), state.get("train", [])
        if not isinstance(traces, list) or not isinstance(train, list):
            raise ConfigError("a saved predictor's 'traces' and 'train' must be lists")
        saved_sig = state["signature"]
        if isinstance(saved_sig, dict) and "string" in saved_sig:  # dspex's earlier format
            signature = load_signature(saved_sig)
        elif isinstance(saved_sig, dict) and isinstance(saved_sig.get("fields"), list):
            try:
                signature = self.signature.load_state(saved_sig)
            except SignatureError as exc:
                raise ConfigError(f"a saved predictor's signature is corrupt: {exc}") from None
        else:
            raise ConfigError("a saved predictor's 'signature' must be an object with 'instructions' and 'fields'")
        name = state.get("adapter")
        adapter = ADAPTERS.get(name) if isinstance(name, str) else None
        if name is not None and adapter is None:
            raise ConfigError(f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)}, or null for the LM's default)")
        lm, has_lm = self.lm, "lm" in state
        saved_lm = state.get("lm")
        if isinstance(saved_lm, dict) and saved_lm:
            lm = BaseLM.load_state(sanitize_lm_state(saved_lm, allow_unsafe_lm_state, logger),
                                   allow_custom_lm_class=allow_unsafe_lm_state)
        elif has_lm and saved_lm is None:
            lm = None
        elif has_lm and not isinstance(saved_lm, str):  # a string: dspex's earlier format named the model only
            raise ConfigError(f"a saved predictor's 'lm' must be an object (lm.dump_state()) or null, got "
                              f"{type(saved_lm).__name__}")
        self.signature, self.lm = signature, lm
        self.demos = [dict(d) for d in demos]
        self.traces, self.train = list(traces), list(train)
        self.adapter = adapter() if adapter is not None else None
        self.config = dict(config)
        return self

    def __getstate__(self) -> dict:
        """Copies and pickles start with an empty ``history`` (it can be long; the LM's own history stays)."""
        state = dict(vars(self))
        state["history"] = []
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.signature_string()!r}, demos={len(self.demos)})"


def _request_now(step: tuple) -> Any:
    """Perform a ``Predict._steps`` step on this thread: one request, or ``n`` of them on threads at once."""
    match step:
        case ("request", lm, messages, options):
            return lm.request(messages, **options)
        case ("requests", lm, messages, each):
            import concurrent.futures
            import contextvars

            with concurrent.futures.ThreadPoolExecutor(min(len(each), 16), thread_name_prefix="dspex-n") as pool:
                futures = [pool.submit(contextvars.copy_context().run, lm.request, messages, **o) for o in each]
                return [f.result() for f in futures]
        case ("call", fn):
            return fn()
    raise TypeError(f"dspex bug: unknown Predict step {step!r}")


async def _request_later(step: tuple) -> Any:
    """Perform a ``Predict._steps`` step on the event loop (an LM without ``arequest``, e.g. a user's own
    class, is called on a thread)."""
    import asyncio

    async def one(lm: Any, messages: list, options: dict) -> Any:
        arequest = getattr(lm, "arequest", None)
        if arequest is None:
            return await asyncio.to_thread(lm.request, messages, **options)
        return await arequest(messages, **options)

    match step:
        case ("request", lm, messages, options):
            return await one(lm, messages, options)
        case ("requests", lm, messages, each):
            return list(await asyncio.gather(*(one(lm, messages, o) for o in each)))
        case ("call", fn):  # sync work that may call an LM: on a thread, its async calls awaited on this loop
            with awaited_from(asyncio.get_running_loop()):
                return await asyncio.to_thread(fn)
    raise TypeError(f"dspex bug: unknown Predict step {step!r}")


class ChainOfThought(Module):
    """DSPy's ChainOfThought: a ``Predict`` (``self.predict``) whose signature has a ``reasoning`` output
    first, so the model thinks before it answers. Its saved state is keyed ``<name>.predict``, as DSPy's.

    ``rationale_field`` / ``rationale_field_type`` are DSPy's (a custom reasoning field); ``rationale_desc``,
    ``lm``, ``adapter``, ``demos`` and ``callbacks`` are dspex's (passed to the inner Predict, with
    ``**config``). ``signature``, ``demos``, ``lm``, ``adapter`` and ``config`` read and write the inner
    Predict's.
    """

    def __init__(self, signature: Any, rationale_field: Any = None, rationale_field_type: Any = str, *,
                 lm: Any = None, adapter: Adapter | None = None, demos: Sequence[Mapping[str, Any]] = (),
                 rationale_desc: str | None = None, callbacks: list | None = None, **config: Any) -> None:
        super().__init__(callbacks=callbacks)
        base = ensure_signature(signature)
        if "reasoning" not in base.fields:
            if rationale_field is not None:
                kind = getattr(rationale_field, "annotation", None)
                field_type = kind if kind not in (None, Any) else rationale_field_type
                base = base.prepend("reasoning", rationale_field, field_type)
            else:
                desc = rationale_desc if rationale_desc is not None else "${reasoning}"
                base = base.prepend("reasoning", OutputField(desc=desc), rationale_field_type)
        self.predict = Predict(base, lm, adapter, demos, **config)

    def forward(self, **kwargs: Any) -> Prediction:
        return self.predict(**kwargs)

    async def aforward(self, **kwargs: Any) -> Prediction:
        return await self.predict.acall(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise self.predict._positional_error()
        return super().__call__(**kwargs)

    # the inner Predict's settings, read and written through the ChainOfThought (dspex's earlier API)
    signature = property(lambda self: self.predict.signature, lambda self, v: setattr(self.predict, "signature", v))
    demos = property(lambda self: self.predict.demos, lambda self, v: setattr(self.predict, "demos", v))
    lm = property(lambda self: self.predict.lm, lambda self, v: setattr(self.predict, "lm", v))
    adapter = property(lambda self: self.predict.adapter, lambda self, v: setattr(self.predict, "adapter", v))
    config = property(lambda self: self.predict.config, lambda self, v: setattr(self.predict, "config", v))

    def adapter_for(self, lm: Any) -> Adapter:
        return self.predict.adapter_for(lm)

    def dump_config(self) -> dict:
        return self.predict.dump_config()

    @classmethod
    def from_config(cls, config: dict | None) -> "ChainOfThought":
        if not config:
            raise ConfigError(f"{cls.__name__} needs its saved config (signature)")
        return cls(load_signature(config["signature"]), **config.get("config", {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.predict.signature.signature_string()!r}, demos={len(self.predict.demos)})"


def _lm_state(lm: Any) -> dict | None:
    """A predictor's LM as saved data: ``lm.dump_state()``; a ``"provider/model"`` string as DSPy's LM
    state of that model; None without one."""
    if isinstance(lm, str):
        from ..clients.lm_state import DSPY_LM_CLASS, LM_CLASS_STATE_KEY

        return {LM_CLASS_STATE_KEY: DSPY_LM_CLASS, "model": lm}
    return dump_lm_state(lm)


def _lm_temperature(lm: Any) -> Any:
    config = getattr(lm, "config", None)
    kwargs = vars(lm).get("kwargs") if hasattr(lm, "__dict__") else None
    if isinstance(kwargs, dict) and "temperature" in kwargs:
        return kwargs["temperature"]
    return getattr(config, "temperature", None)


def type_name(annotation: Any) -> str:
    """How a type reads in DSPy's mismatch warning: ``int``, ``list[str]``, ``Literal['a', 'b']``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if args:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(origin, "__name__", str(origin))


def value_matches_type(value: Any, expected: Any) -> bool:
    """Whether an input value fits its field's annotation (DSPy's check, which warns; a list of strings
    fits ``str``, as DSPy formats it)."""
    if expected is str and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return True
    return _fits(value, expected)


def _fits(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    origin, args = get_origin(expected), get_args(expected)
    if origin is Union or origin is types.UnionType:
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin in (list, set, frozenset):
        return isinstance(value, origin) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_fits(k, args[0]) and _fits(v, args[1])
                                                            for k, v in value.items()))
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args)))
    if origin is not None:
        return isinstance(value, origin) if isinstance(origin, type) else True
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # annotations it cannot read (forward references, NewType...): no warning


def dump_signature(sig: SignatureMeta) -> dict:
    """A signature as data: its string (types written as the signature parser reads them), instructions,
    each field's description and prefix, and where its custom types (pydantic models, enums) live."""
    custom: dict[str, str] = {}
    for field in sig.fields.values():
        for name, cls in custom_types_of(field.annotation).items():
            custom[name] = f"{cls.__module__}:{cls.__qualname__}"
    return {"name": sig.__name__, "string": sig.signature_string(), "instructions": sig.custom_instructions,
            "fields": {n: {"desc": f.desc, "prefix": f.prefix} for n, f in sig.fields.items()}, "types": custom}


def load_signature(data: Any) -> SignatureMeta:
    """The inverse of :func:`dump_signature`, reading data only: types go through the allow-listed
    parser (never ``eval``), custom types are found only in modules already imported (nothing is
    imported), and a field can change only its description and prefix."""
    if not isinstance(data, dict) or not isinstance(data.get("string"), str):
        raise ConfigError("a saved signature must be an object with a 'string' (e.g. 'question -> answer')")
    fields_data, instructions = data.get("fields", {}), data.get("instructions")
    if not isinstance(fields_data, dict) or not (instructions is None or isinstance(instructions, str)):
        raise ConfigError("a saved signature's 'fields' must be an object and its 'instructions' a string or null")
    custom = {name: resolve_saved_type(name, path) for name, path in _items(data.get("types", {}), "types")}
    try:
        parsed = Signature(data["string"], custom_types=custom)
        fields = {}
        for name, field in parsed.fields.items():
            saved = fields_data.get(name, {})
            if not isinstance(saved, dict) or set(saved) - {"desc", "prefix"}:
                raise ConfigError(f"saved field {name!r} may hold only 'desc' and 'prefix' (strings), got "
                                  f"{sorted(saved) if isinstance(saved, dict) else type(saved).__name__}")
            if not all(isinstance(v, str) for v in saved.values()):
                raise ConfigError(f"saved field {name!r}: 'desc' and 'prefix' must be strings")
            fields[name] = replace(field, **saved)
        name = data.get("name", "StringSignature")
        return make_signature(fields, instructions, name if isinstance(name, str) and name.isidentifier()
                              else "StringSignature")
    except SignatureError as exc:
        raise ConfigError(f"a saved signature is corrupt: {exc}") from None


def resolve_saved_type(name: str, path: Any) -> type:
    """A custom type named in a saved program: only from a module already imported, and only a pydantic
    model or an enum (loading a file never imports code)."""
    import enum

    import pydantic

    obj = imported_object(path, f"saved type {name!r}")
    if not (isinstance(obj, type) and (issubclass(obj, pydantic.BaseModel) or issubclass(obj, enum.Enum))):
        raise ConfigError(f"saved type {name!r} ({path}) is not a pydantic model or an enum: refused")
    return obj


def _items(value: Any, what: str) -> list:
    if not isinstance(value, dict):
        raise ConfigError(f"a saved signature's {what!r} must be an object")
    return list(value.items())


def _jsonable(demo: Mapping[str, Any]) -> dict:
    data = dict(demo.items()) if isinstance(demo, Example) else dict(demo)
    return {k: to_jsonable(v) for k, v in data.items()}


def serialize_object(obj: Any) -> Any:
    """DSPy's ``serialize_object``: pydantic models (also inside lists, tuples and dicts) as JSON-able dicts."""
    if isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [serialize_object(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(serialize_object(v) for v in obj)
    if isinstance(obj, dict):
        return {k: serialize_object(v) for k, v in obj.items()}
    return obj


__all__ = ["Predict", "ChainOfThought", "TraceStep", "dump_signature", "load_signature", "serialize_object"]
