"""Predict and ChainOfThought: one signature, one adapter, demos, an LM; parse failures handled in steps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import structlog

from ..adapters import ADAPTERS, Adapter, ChatAdapter, JSONAdapter
from ..adapters.base import to_jsonable
from ..errors import AdapterParseError, ConfigError, SignatureError
from ..primitives import Example, Prediction, Usage
from ..signature import OutputField, Signature, SignatureMeta, custom_types_of, ensure_signature, make_signature
from .module import Predictor, imported_object
from .settings import resolve_lm, setting
from ..clients.scope import streaming
from .streaming import current_session
from .trace import TraceStep, record, step_name

log = structlog.get_logger("dspex.programs")
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
        self.lm = lm
        self.adapter = adapter  # None: the LM's default_adapter
        self.demos = [dict(d) for d in demos]
        self.config = dict(config)

    def forward(self, **kwargs: Any) -> Prediction:
        """Answer for the signature's inputs. As DSPy's ``Predict.forward``, a call may also pass ``lm=``,
        ``config=`` (LM options), ``demos=`` and ``signature=`` for this call only (unless the signature has
        a field of that name); any other keyword that is not a field of the signature is a ConfigError."""
        inputs, sig, call = self._call_options(kwargs)
        per_call = call.get("config")
        if per_call is not None and not isinstance(per_call, dict):
            raise ConfigError(f"config= must be a dict of LM options (e.g. {{'temperature': 0.7}}), got {per_call!r}")
        demos = [dict(d) for d in call["demos"]] if call.get("demos") is not None else self.demos
        owner = f"{type(self).__name__}({sig.signature_string()!r})"
        # this call's LM wins over the predictor's, which wins over the context's; a call never changes the
        # predictor (a "provider/model" string is resolved to a handle each time, never stored back)
        lm = resolve_lm(call["lm"] if call.get("lm") is not None else self.lm, owner)
        options, adapter = {**self.config, **(per_call or {})}, self.adapter_for(lm)
        options.setdefault("prompt_style", adapter.prompt_style)
        n = options.pop("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n must be an int >= 1 (how many completions), got {n!r}")
        adapter.check_inputs(sig, inputs)
        messages = adapter.format(sig, demos, inputs)
        ask = (lm, adapter, sig, demos, inputs, messages)
        session = current_session()
        if session is not None and n == 1:  # inside dspex.streamify: stream this call if a listener follows it
            sink, finish = session.sink_for(self, step_name(self))
            with streaming(sink):
                answers = [self._answer(*ask, options)]
            finish(answers[0][0])
        elif n == 1:
            answers = [self._answer(*ask, options)]
        else:  # n completions as n concurrent calls, told apart in the cache by their rollout ids
            import concurrent.futures
            import contextvars

            base = int(options.pop("rollout", 0) or 0)
            with concurrent.futures.ThreadPoolExecutor(min(n, 16), thread_name_prefix="dspex-n") as pool:
                futures = [pool.submit(contextvars.copy_context().run, self._answer, *ask,
                                       {**options, "rollout": base * n + i}) for i in range(n)]
                answers = [f.result() for f in futures]
        comps = [c for _, cs in answers for c in cs]
        values = answers[0][0]
        usage, cost = sum((c.usage for c in comps), Usage()), sum(c.cost for c in comps)
        step = TraceStep(step_name(self), dict(inputs), dict(values), usage, cost, str(getattr(lm, "model", "")))
        record(step)
        return Prediction(values, usage=usage, cost=cost, raw=comps[-1].text, trace=[step],
                          completions=[v for v, _ in answers])

    def _call_options(self, kwargs: dict) -> tuple[dict, SignatureMeta, dict]:
        """Split a call's keywords into the signature's inputs, the signature in force and this call's options
        (lm, config, demos, signature, as DSPy's Predict takes them); a keyword that is neither is a
        ConfigError naming it."""
        fields = self.signature.fields
        call = {name: kwargs.pop(name) for name in CALL_OPTIONS if name in kwargs and name not in fields}
        sig = ensure_signature(call["signature"]) if call.get("signature") is not None else self.signature
        unknown = sorted(set(kwargs) - set(sig.fields))
        if unknown:
            raise ConfigError(f"{type(self).__name__}({sig.signature_string()!r}) got {', '.join(map(repr, unknown))}"
                              f", which is not a field of its signature (inputs: {', '.join(sig.input_fields)}); "
                              f"a call also takes {', '.join(f'{o}=' for o in CALL_OPTIONS)}")
        return kwargs, sig, call

    def _answer(self, lm: Any, adapter: Adapter, sig: SignatureMeta, demos: list, inputs: dict, messages: list,
                options: dict) -> tuple[dict, list]:
        """One parsed answer and the completions it took (a re-ask, a JSON fallback)."""
        comps = [lm.request(messages, **options)]
        try:
            values = adapter.parse(sig, comps[-1].text)
        except AdapterParseError as first:
            log.info("parse_failed_reasking", signature=sig.signature_string(), reason=first.reason)
            why = first.reason or "missing fields: " + ", ".join(first.missing_fields)
            retry = [*messages, {"role": "assistant", "content": comps[-1].text},
                     {"role": "user", "content": f"Your answer could not be parsed ({why}). "
                                                 "Answer again, exactly in the required format."}]
            comps.append(lm.request(retry, **options))
            try:
                values = adapter.parse(sig, comps[-1].text)
            except AdapterParseError:
                values = self._json_fallback(lm, adapter, sig, demos, inputs, options, comps)
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

    def _json_fallback(self, lm: Any, adapter: Adapter, sig: SignatureMeta, demos: list, inputs: dict,
                       options: dict, comps: list) -> dict:
        if isinstance(adapter, JSONAdapter):
            return adapter.parse(sig, comps[-1].text)  # raises the AdapterParseError
        log.info("parse_failed_json_fallback", signature=sig.signature_string())
        fallback = JSONAdapter()
        options = {**options, "prompt_style": fallback.prompt_style}
        comps.append(lm.request(fallback.format(sig, demos, inputs), **options))
        return fallback.parse(sig, comps[-1].text)  # AdapterParseError if this fails too

    # --- saving ------------------------------------------------------------------------------------

    def dump_config(self) -> dict:
        return {"signature": dump_signature(self.signature), "config": self.config}

    @classmethod
    def from_config(cls, config: dict | None) -> "Predict":
        if not config:
            raise ConfigError(f"{cls.__name__} needs its saved config (signature)")
        return cls(load_signature(config["signature"]), **config.get("config", {}))

    def dump_state(self) -> dict:
        return {"signature": dump_signature(self.signature), "demos": [_jsonable(d) for d in self.demos],
                "adapter": self.adapter.name() if self.adapter is not None else None,
                "lm": getattr(self.lm, "model", None), "config": self.config}

    def load_state(self, state: dict) -> "Predict":
        if not isinstance(state, dict) or "signature" not in state:
            raise ConfigError(f"a saved predictor must be an object with a 'signature', got {type(state).__name__}")
        demos, config = state.get("demos", []), state.get("config", {})
        if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos) or not isinstance(config, dict):
            raise ConfigError("a saved predictor's 'demos' must be a list of objects and its 'config' an object")
        self.signature = load_signature(state["signature"])
        self.demos = [dict(d) for d in demos]
        name = state.get("adapter")
        adapter = ADAPTERS.get(name) if name is not None else None
        if name is not None and adapter is None:
            raise ConfigError(f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)}, or null for the LM's default)")
        self.adapter = adapter() if adapter is not None else None
        self.config = dict(config)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.signature_string()!r}, demos={len(self.demos)})"


class ChainOfThought(Predict):
    """Predict with a ``reasoning`` output first, so the model thinks before it answers."""

    def __init__(self, signature: Any, lm: Any = None, adapter: Adapter | None = None,
                 demos: Sequence[Mapping[str, Any]] = (), rationale_desc: str = "Think step by step.",
                 callbacks: list | None = None, **config: Any) -> None:
        base = ensure_signature(signature)
        if "reasoning" not in base.fields:
            base = base.prepend("reasoning", OutputField(desc=rationale_desc), str)
        super().__init__(base, lm, adapter, demos, callbacks, **config)


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
