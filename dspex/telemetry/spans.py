"""The callback that turns dspex's calls into OpenTelemetry spans.

One span per module call, LM request, adapter format / parse, tool call, evaluation, evaluation row,
compile and compile step. A start hook opens the span as a child of the span current in its context (the
caller's: dspex hands its context to the threads it starts, and :mod:`.propagation` carries it to worker
processes and hosts) and makes it current; the end hook closes it with what the call returned or raised.

LM spans follow OpenTelemetry's GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.system``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``) and
carry OpenInference's span kind, which Arize Phoenix reads. What a program read and wrote (messages,
inputs, outputs) is recorded only with ``capture_messages=True``, bounded, with every known key masked;
without it a span holds names, sizes, scores, token counts and error types, nothing a user typed.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from ..scrub import bounded, known_keys, scrub_text
from ..utils.callback import BaseCallback

MAX_TEXT = 16_000  # characters of captured text per attribute (a span stays small; the rest is "…")

# which OpenInference span kind each dspex call is (Phoenix groups and draws spans by it)
_OPENINFERENCE = {"module": "CHAIN", "lm": "LLM", "adapter_format": "CHAIN", "adapter_parse": "CHAIN",
                  "tool": "TOOL", "evaluate": "CHAIN", "evaluate_row": "CHAIN", "compile": "CHAIN",
                  "compile_step": "CHAIN"}


def _text(value: Any) -> str:
    """``value`` as bounded text with every known key masked (captured content only)."""
    if isinstance(value, str):
        return bounded(value, MAX_TEXT)
    try:
        return bounded(json.dumps(value, default=str, ensure_ascii=False), MAX_TEXT)
    except (TypeError, ValueError):
        return bounded(value, MAX_TEXT)


def _class(instance: Any) -> str:
    return type(instance).__name__ if instance is not None else "dspex"


def _lm_start(instance: Any, inputs: dict[str, Any], capture: bool) -> tuple[str, dict[str, Any]]:
    config = getattr(instance, "config", None)
    provider = getattr(config, "provider", None) or "custom"
    model = getattr(config, "model", None) or getattr(instance, "model", None) or "unknown"
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.system": provider,
                             "gen_ai.provider.name": provider, "gen_ai.request.model": str(model)}
    for name, attr in (("temperature", "gen_ai.request.temperature"), ("max_tokens", "gen_ai.request.max_tokens")):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            attrs[attr] = value
    if capture and inputs.get("messages") is not None:
        messages = inputs["messages"]
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        attrs["gen_ai.input.messages"] = attrs["input.value"] = _text(messages)
    return f"chat {model}", attrs


def _lm_end(outputs: Any, capture: bool) -> dict[str, Any]:
    usage = getattr(outputs, "usage", None)
    attrs: dict[str, Any] = {}
    for name, attr in (("prompt_tokens", "gen_ai.usage.input_tokens"),
                       ("completion_tokens", "gen_ai.usage.output_tokens")):
        value = getattr(usage, name, None)
        if isinstance(value, int):
            attrs[attr] = value
    if getattr(outputs, "model", None):
        attrs["gen_ai.response.model"] = str(outputs.model)
    for name in ("cost", "cached", "attempts", "latency_s"):
        value = getattr(outputs, name, None)
        if isinstance(value, (bool, int, float)):
            attrs[f"dspex.lm.{name}"] = value
    if capture and getattr(outputs, "text", None) is not None:
        text = _text(outputs.text)
        attrs["output.value"] = text
        attrs["gen_ai.output.messages"] = _text([{"role": "assistant", "content": text}])
    return attrs


def _start(kind: str, instance: Any, inputs: dict[str, Any], capture: bool) -> tuple[str, dict[str, Any]]:
    """The span's name and first attributes for a call of ``kind`` on ``instance``."""
    attrs: dict[str, Any] = {"dspex.call": kind, "openinference.span.kind": _OPENINFERENCE.get(kind, "CHAIN")}
    if kind == "lm":
        name, more = _lm_start(instance, inputs, capture)
        return name, {**attrs, **more}
    if kind == "tool":
        tool = str(getattr(instance, "name", None) or _class(instance))
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "tool.name": tool})
        name = f"execute_tool {tool}"
    elif kind == "evaluate_row":
        name = f"evaluate row {inputs.get('index')}"
        attrs.update({"dspex.row.index": inputs.get("index"), "dspex.row.attempt": inputs.get("attempt"),
                      "dspex.row.worker": str(inputs.get("worker"))})
    elif kind == "compile_step":
        name = f"compile step {inputs.get('phase')}"
        attrs.update({"dspex.compile.phase": str(inputs.get("phase")), "dspex.compile.candidate": str(inputs.get("name")),
                      "dspex.compile.examples": inputs.get("examples")})
    elif kind == "compile":
        name = f"{_class(instance)}.compile"
        attrs["dspex.compile.optimizer"] = _class(instance)
    elif kind == "evaluate":
        name = "Evaluate"
        devset = inputs.get("devset") or getattr(instance, "devset", None)
        if devset is not None:
            attrs["dspex.evaluate.examples"] = len(devset)
    elif kind in ("adapter_format", "adapter_parse"):
        name = f"{_class(instance)}.{kind.removeprefix('adapter_')}"
    else:
        name = f"{_class(instance)}.forward"
        attrs["dspex.module"] = _class(instance)
    if capture and kind in ("module", "tool", "evaluate_row"):
        captured = {k: v for k, v in inputs.items() if k not in ("worker", "attempt", "index")}
        attrs["input.value"] = _text(captured.get("kwargs", captured) if kind == "module" else captured)
    return name, {k: v for k, v in attrs.items() if v is not None}


def _end(kind: str, outputs: Any, capture: bool) -> dict[str, Any]:
    """Attributes a call's result adds to its span."""
    if kind == "lm":
        return _lm_end(outputs, capture)
    attrs: dict[str, Any] = {}
    if kind == "evaluate_row" and outputs is not None:
        attrs["dspex.row.score"] = float(getattr(outputs, "score", 0.0) or 0.0)
        error = getattr(outputs, "error", None)
        if error is not None:
            attrs["error.type"] = type(error).__name__
    elif kind in ("evaluate", "compile_step") and outputs is not None:
        score = getattr(outputs, "score", None)
        if isinstance(score, (int, float)):
            attrs["dspex.score"] = float(score)
        rows = getattr(outputs, "rows", None)
        if rows is not None:
            attrs["dspex.rows"] = len(rows)
            attrs["dspex.rows.failed"] = sum(1 for r in rows if getattr(r, "error", None) is not None)
    elif kind == "compile" and outputs is not None:
        report = getattr(outputs, "compile_report", None)
        for name, attr in (("score", "dspex.score"), ("baseline_score", "dspex.compile.baseline_score"),
                           ("lm_calls", "dspex.compile.lm_calls"), ("cost", "dspex.compile.cost_usd"),
                           ("stopped", "dspex.compile.stopped")):
            value = getattr(report, name, None)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                attrs[attr] = value
    if capture and outputs is not None and kind in ("module", "tool", "adapter_parse"):
        attrs["output.value"] = _text(_plain(outputs))
    return attrs


def _plain(outputs: Any) -> Any:
    """A Prediction's fields as a dict (it is not JSON itself); anything else as it is."""
    to_dict = getattr(outputs, "toDict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception:  # noqa: BLE001 - a user's output type: its text is captured instead
            return str(outputs)
    return outputs


class SpanCallback(BaseCallback):
    """Opens a span at each start hook and closes it at the matching end hook (see the module's doc)."""

    def __init__(self, tracer: Any, capture_messages: bool = False) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        self.tracer, self.capture = tracer, capture_messages
        self._context, self._trace = otel_context, trace
        self._open: dict[str, tuple[Any, Any, str]] = {}  # call id -> (span, context token, kind)
        self._lock = threading.Lock()

    def begin(self, kind: str, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open the span of call ``call_id`` (a ``kind`` call) as a child of the current one, and make it
        current for what the call does."""
        name, attrs = _start(kind, instance, inputs, self.capture)
        span_kind = self._trace.SpanKind.CLIENT if kind == "lm" else self._trace.SpanKind.INTERNAL
        span = self.tracer.start_span(name, kind=span_kind, attributes=attrs)
        token = self._context.attach(self._trace.set_span_in_context(span))
        with self._lock:
            self._open[call_id] = (span, token, kind)

    def finish(self, call_id: str, outputs: Any, exception: BaseException | None) -> None:
        """Close the span of call ``call_id`` with its result or error; its parent is current again."""
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:  # the call started before instrument()
            return
        span, token, kind = opened
        try:
            if exception is not None:
                self._failed(span, exception)
            else:
                span.set_attributes(_end(kind, outputs, self.capture))
        finally:
            span.end()
            self._context.detach(token)

    def _failed(self, span: Any, exception: BaseException) -> None:
        """The error's type and its message with keys masked (no traceback: its source lines and locals
        are the program's, not the trace's)."""
        from opentelemetry.trace import Status, StatusCode

        kind = type(exception).__name__
        message = scrub_text(str(exception), known_keys())[:2000]
        span.set_attribute("error.type", kind)
        span.add_event("exception", {"exception.type": kind, "exception.message": message})
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"[:2000]))


def _hooks(kind: str) -> tuple[Callable, Callable]:
    def start(self: SpanCallback, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.begin(kind, call_id, instance, inputs)

    def end(self: SpanCallback, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self.finish(call_id, outputs, exception)

    return start, end


for _kind in _OPENINFERENCE:  # each kind of call's two hooks (BaseCallback's names) open and close a span
    _on_start, _on_end = _hooks(_kind)
    setattr(SpanCallback, f"on_{_kind}_start", _on_start)
    setattr(SpanCallback, f"on_{_kind}_end", _on_end)
del _kind, _on_start, _on_end

__all__ = ["SpanCallback", "MAX_TEXT"]
