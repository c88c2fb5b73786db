"""The adapter interface (DSPy's ``dspy.adapters.base.Adapter``) and the value rendering every adapter shares.

An adapter turns ``(signature, demos, inputs)`` into chat messages (:meth:`Adapter.format`) and an LM's text
back into the signature's output values (:meth:`Adapter.parse`). Called as ``adapter(lm, lm_kwargs,
signature, demos, inputs)`` it does both around one LM call, as DSPy's adapters do; dspex's ``Predict`` calls
``format``/``parse`` itself around ``lm.request`` (re-ask, JSON fallback, streaming, n completions).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from typing import Any, Mapping, NamedTuple, Sequence

import pydantic

from ..errors import AdapterParseError, LMError, SignatureError
from ..signature import Field, FieldKind, SignatureMeta, make_signature
from ..utils.callback import with_callbacks
from .tool_history import replay_turn
from .utils import (_adapter_for, apply_output_field_defaults, format_field_value, get_field_description_string,
                    loads_lenient, parse_value, serialize_for_json)

Message = dict[str, Any]
NOT_SUPPLIED = "Not supplied for this particular example."
INCOMPLETE_DEMO_PREFIX = "This is an example of the task, though some input or output fields are not supplied."
_TOOL_KWARGS = ("tools", "tool_choice", "parallel_tool_calls")
_NATIVE_TYPE_NAMES = frozenset({"Citations", "Reasoning"})


class FieldInfoWithName(NamedTuple):
    """A field and its name: the keys of ``format_field_with_value``'s mapping (DSPy's name)."""

    name: str
    info: Any


# --- values as plain data (used across dspex: traces, journals, the dashboard) --------------------------

def to_jsonable(value: Any) -> Any:
    """Plain JSON data for any value pydantic can serialize (models, containers, scalars); an Example or
    a Prediction given as a value is its fields. Anything else is a SignatureError that says what to pass."""
    try:
        return _adapter_for(Any).dump_python(_plain(value), mode="json")  # (cached: a schema each time cost ~100 µs)
    except pydantic.PydanticSerializationError as exc:
        raise SignatureError(f"cannot render a {type(value).__name__} as a field value ({str(exc)[:120]}): pass "
                             "text, numbers, lists/dicts of them, or a pydantic model") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):  # dict, Example, Prediction
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render_value(value: Any) -> str:
    """Strings as they are; everything else as JSON (pydantic-aware)."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return json.dumps(to_jsonable(value), ensure_ascii=False)


# --- the parse error with DSPy's fields ------------------------------------------------------------------

class ParseFailure(AdapterParseError):
    """An :class:`~dspex.errors.AdapterParseError` with DSPy's fields: ``adapter_name``, ``lm_response``,
    ``parsed_result`` (what could be parsed, None when nothing was) and DSPy's message; ``missing_fields``
    and ``reason`` as dspex's own (what ``Predict``'s re-ask tells the model)."""

    def __init__(self, adapter_name: str, signature: Any, lm_response: Any, message: str | None = None,
                 parsed_result: Mapping[str, Any] | None = None) -> None:
        outputs = list(getattr(signature, "output_fields", {}) or {})
        missing = [n for n in outputs if n not in parsed_result] if parsed_result is not None else []
        super().__init__(signature, str(lm_response), missing, message or "")
        self.adapter_name = adapter_name
        self.lm_response = lm_response
        self.parsed_result = dict(parsed_result) if parsed_result is not None else None
        self.message = message
        text = f"{message}\n\n" if message else ""
        text += (f"Adapter {adapter_name} failed to parse the LM response. \n\n"
                 f"LM Response: {lm_response} \n\n"
                 f"Expected to find output fields in the LM response: [{', '.join(outputs)}] \n\n")
        if parsed_result is not None:
            text += f"Actual output fields parsed from the LM response: [{', '.join(parsed_result)}] \n\n"
        self.args = (text,)

    def __reduce__(self):
        return (type(self), (self.adapter_name, self.signature, self.lm_response, self.message, self.parsed_result))


# --- signatures without some fields ------------------------------------------------------------------------

def without_fields(signature: SignatureMeta, *names: str) -> SignatureMeta:
    """The signature less the named fields (DSPy's ``signature.delete``)."""
    delete = getattr(signature, "delete", None)
    if delete is not None:
        for name in names:
            signature = signature.delete(name)
        return signature
    fields = {n: f for n, f in signature.fields.items() if n not in names}
    return make_signature(fields, getattr(signature, "custom_instructions", None) or signature.instructions,
                          signature.__name__)


def _class_named(annotation: Any, *names: str) -> bool:
    return inspect.isclass(annotation) and annotation.__name__ in names


class Adapter:
    """Turns (signature, demos, inputs) into chat messages, and an LM's text back into output values.

    Subclasses implement ``format_field_description``, ``format_field_structure``,
    ``format_task_description``, ``format_user_message_content``, ``format_assistant_message_content`` and
    ``parse`` (or ``format`` itself). ``use_native_function_calling``: with a ``list[Tool]`` input and a
    ``ToolCalls`` output, ask the LM for tool calls natively when it supports them.
    ``prompt_style`` says how a model that can take either should read the messages: ``"chat"`` (its chat
    template) or ``"completion"`` (the text continued as it stands); only local models use it.
    ``parse_calls_lm``: ``parse`` itself calls an LM (TwoStepAdapter's extraction model), so an async call
    runs it on a worker thread with its LM's async calls awaited on the caller's loop, never inline there.
    """

    prompt_style = "chat"
    parse_calls_lm = False
    _callback_kind = "adapter"  # format and parse fire the adapter hooks (dspex.utils.callback)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's own ``format`` / ``parse`` fire the callbacks too (as DSPy wraps them)."""
        super().__init_subclass__(**kwargs)
        for name in ("format", "parse"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "fires_callbacks", False):
                setattr(cls, name, with_callbacks(method))

    def __init__(self, callbacks: list | None = None, use_native_function_calling: bool = False,
                 native_response_types: list[type] | None = None, parallel_tool_calls: bool | None = None) -> None:
        self.callbacks = list(callbacks or [])
        self.use_native_function_calling = use_native_function_calling
        self.native_response_types = native_response_types
        self.parallel_tool_calls = parallel_tool_calls

    # --- one LM call: format, call, parse ------------------------------------------------------------

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                 demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Format, call ``lm(messages=..., **lm_kwargs)``, parse each output: one dict of output values
        per completion (``n > 1`` gives several)."""
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        outputs = lm(messages=messages, **lm_kwargs)
        return self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                    demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        if callable(getattr(lm, "acall", None)):
            outputs = await lm.acall(messages=messages, **lm_kwargs)
        else:
            outputs = await asyncio.to_thread(lambda: lm(messages=messages, **lm_kwargs))
        return self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)

    def _call_preprocess(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                         inputs: Mapping[str, Any]) -> SignatureMeta:
        """The signature to render (less the fields the LM fills natively); edits ``lm_kwargs`` in place."""
        if not self.use_native_function_calling:
            for key in _TOOL_KWARGS:
                lm_kwargs.pop(key, None)
        else:
            tools_in = self._get_tool_call_input_field_name(signature)
            calls_out = self._get_tool_call_output_field_name(signature)
            if calls_out and tools_in is None:
                raise SignatureError(f"the output field {calls_out!r} receives tool calls, but no input gives the "
                                     "tools: add an input field of type list[dspex.Tool]")
            if calls_out and getattr(lm, "supports_function_calling", False):
                tools = inputs[tools_in]
                tools = tools if isinstance(tools, list) else [tools]
                lm_kwargs["tools"] = [tool.format_as_litellm_function_call() for tool in tools]
                if self.parallel_tool_calls is not None and lm_kwargs.get("parallel_tool_calls") is None:
                    lm_kwargs["parallel_tool_calls"] = self.parallel_tool_calls
                signature = without_fields(signature, calls_out, tools_in)
            elif calls_out:  # the LM cannot call tools natively: the calls are asked for as text
                for key in _TOOL_KWARGS:
                    lm_kwargs.pop(key, None)
        if lm_kwargs.get("parallel_tool_calls") is not None:  # providers take the switch with a tool choice
            lm_kwargs.setdefault("tool_choice", "auto")
        for name, field in signature.output_fields.items():
            if self._is_native_response_type(field.annotation):
                signature = field.annotation.adapt_to_native_lm_feature(signature, name, lm, lm_kwargs)
        return signature

    def _is_native_response_type(self, annotation: Any) -> bool:
        if not inspect.isclass(annotation) or not hasattr(annotation, "adapt_to_native_lm_feature"):
            return False
        if self.native_response_types is not None:
            return annotation in self.native_response_types
        return annotation.__name__ in _NATIVE_TYPE_NAMES and annotation.__module__.startswith("dspex.")

    def _call_postprocess(self, processed_signature: SignatureMeta, original_signature: SignatureMeta,
                          outputs: Any, lm: Any, lm_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        values = []
        calls_out = self._get_tool_call_output_field_name(original_signature)
        for output in _as_output_list(outputs):
            text, logprobs, tool_calls = output, None, None
            if isinstance(output, Mapping):
                text, logprobs, tool_calls = output.get("text"), output.get("logprobs"), output.get("tool_calls")
            if text and not (tool_calls and calls_out):
                value = self.parse(processed_signature, text)
            elif tool_calls and calls_out:
                try:
                    value = self.parse(processed_signature, text) if text and processed_signature.output_fields \
                        else {}
                except AdapterParseError:
                    value = {}
            else:
                raise ParseFailure(type(self).__name__, original_signature, str(output),
                                   "The LM returned an empty or null response.")
            value = apply_output_field_defaults(original_signature, value)
            for name in original_signature.output_fields:
                value.setdefault(name, None)
            if tool_calls and calls_out:
                calls_type = original_signature.output_fields[calls_out].annotation
                value[calls_out] = calls_type.from_dict_list([_tool_call_dict(c) for c in tool_calls])
            for name, field in original_signature.output_fields.items():
                if self._is_native_response_type(field.annotation):
                    parsed = field.annotation.parse_lm_response(output)
                    if parsed is not None:
                        value[name] = parsed
            if logprobs:
                value["logprobs"] = logprobs
            values.append(value)
        return values

    # --- messages ------------------------------------------------------------------------------------

    @with_callbacks
    def format(self, signature: SignatureMeta, demos: Sequence[Mapping[str, Any]],
               inputs: Mapping[str, Any]) -> list[Message]:
        """System message (fields, structure, task), the demos as user/assistant turns, the conversation
        history (a ``History`` input), then the current inputs. Inputs not given are left out (as DSPy;
        ``check_inputs`` reports them)."""
        inputs = dict(inputs)
        history_field = self._get_history_field_name(signature)
        if history_field:
            signature_without_history = without_fields(signature, history_field)
            history = self.format_conversation_history(signature_without_history, history_field, inputs)
        messages: list[Message] = [{"role": "system", "content": self._system_message(signature)}]
        messages.extend(self.format_demos(signature, list(demos or ())))
        if history_field:
            messages.extend(history)
            signature = signature_without_history
        content = self.format_user_message_content(signature, inputs, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        return _content_parts(messages)

    def _system_message(self, signature: SignatureMeta) -> str:
        """``format_system_message``, worked out once per signature (its fields and instructions) for an adapter
        whose system message is dspex's own, which depends on the signature alone (a few hundred
        microseconds a call otherwise); a user's override of any part is called every time."""
        kind = type(self)
        if not _builtin_system_message(kind):
            return self.format_system_message(signature)
        cached = signature.__dict__.get("_system_messages")
        if cached is None or cached[0] is not signature._fields or cached[1] is not signature._instructions:
            cached = (signature._fields, signature._instructions, {})
            type.__setattr__(signature, "_system_messages", cached)
        text = cached[2].get(kind)
        if text is None:
            text = cached[2][kind] = self.format_system_message(signature)
        return text

    def format_system_message(self, signature: SignatureMeta) -> str:
        return (f"{self.format_field_description(signature)}\n{self.format_field_structure(signature)}\n"
                f"{self.format_task_description(signature)}")

    def format_field_description(self, signature: SignatureMeta) -> str:
        raise NotImplementedError

    def format_field_structure(self, signature: SignatureMeta) -> str:
        raise NotImplementedError

    def format_task_description(self, signature: SignatureMeta) -> str:
        raise NotImplementedError

    def format_user_message_content(self, signature: SignatureMeta, inputs: Mapping[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        raise NotImplementedError

    def format_assistant_message_content(self, signature: SignatureMeta, outputs: Mapping[str, Any],
                                         missing_field_message: str | None = None) -> str:
        raise NotImplementedError

    def format_field_with_value(self, fields_with_values: Mapping[FieldInfoWithName, Any]) -> str:
        """``name: value`` per field, blank-line separated (adapters with markers override it)."""
        return "\n\n".join(f"{f.name}: {format_field_value(f.info, v)}" for f, v in fields_with_values.items()).strip()

    def user_message_output_requirements(self, signature: SignatureMeta) -> str | None:
        return None

    def format_demos(self, signature: SignatureMeta, demos: Sequence[Mapping[str, Any]]) -> list[Message]:
        """Few-shot examples as user/assistant turns: the incomplete ones first (with at least one input and
        one output; marked as such, missing outputs "Not supplied"), then the complete ones; demos with no
        input or no output are left out."""
        complete, incomplete = [], []
        for demo in demos:
            if all(k in demo and demo[k] is not None for k in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature.input_fields) and any(k in demo for k in signature.output_fields):
                incomplete.append(demo)
        messages: list[Message] = []
        for demo in incomplete:
            messages.append({"role": "user", "content": self.format_user_message_content(
                signature, demo, prefix=INCOMPLETE_DEMO_PREFIX)})
            messages.append({"role": "assistant", "content": self.format_assistant_message_content(
                signature, demo, missing_field_message=NOT_SUPPLIED + " ")})
        for demo in complete:
            messages.append({"role": "user", "content": self.format_user_message_content(signature, demo)})
            messages.append({"role": "assistant", "content": self.format_assistant_message_content(
                signature, demo, missing_field_message="Not supplied for this conversation history message. ")})
        return messages

    def format_conversation_history(self, signature: SignatureMeta, history_field_name: str,
                                    inputs: dict[str, Any]) -> list[Message]:
        """The turns of the ``History`` input as messages (and the field taken out of ``inputs``): each
        turn's inputs as a user message, its outputs as the assistant's, and a turn that called tools as
        :mod:`.tool_history` replays it (natively, or as text)."""
        history = inputs.get(history_field_name)
        turns = getattr(history, "messages", None) if history is not None else None
        if turns is None:
            return []
        messages: list[Message] = []
        for turn in turns:
            messages.extend(replay_turn(self, signature, turn))
        del inputs[history_field_name]
        return messages

    @with_callbacks
    def parse(self, signature: SignatureMeta, completion: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- special fields ------------------------------------------------------------------------------

    def _get_history_field_name(self, signature: SignatureMeta) -> str | None:
        return next((n for n, f in signature.input_fields.items() if _class_named(f.annotation, "History")), None)

    def _get_tool_call_input_field_name(self, signature: SignatureMeta) -> str | None:
        for name, field in signature.input_fields.items():
            annotation = field.annotation
            args = getattr(annotation, "__args__", ())
            if _class_named(annotation, "Tool") or (getattr(annotation, "__origin__", None) is list and args
                                                     and _class_named(args[0], "Tool")):
                return name
        return None

    def _get_tool_call_output_field_name(self, signature: SignatureMeta) -> str | None:
        return next((n for n, f in signature.output_fields.items() if _class_named(f.annotation, "ToolCalls")), None)

    # --- dspex's own ---------------------------------------------------------------------------------

    def format_answer(self, signature: SignatureMeta, values: Mapping[str, Any]) -> str:
        """The text a perfect LM would answer with (the assistant turn of a demo)."""
        return self.format_assistant_message_content(signature, values)

    @staticmethod
    def check_inputs(signature: SignatureMeta, inputs: Mapping[str, Any]) -> None:
        """Every required input field must be given: a missing one is the caller's error, not the LM's."""
        missing = [n for n, f in signature.input_fields.items() if n not in inputs and not f.optional]
        if missing:
            raise SignatureError(f"{signature.__name__}: missing input field(s) {', '.join(missing)}")

    def name(self) -> str:
        return type(self).__name__

    def _parse_fields(self, signature: SignatureMeta, sections: Mapping[str, Any], completion: str) -> dict[str, Any]:
        """Each section's value as its field's type, defaults for optional outputs left out; a
        :class:`ParseFailure` names the field that did not parse, or the fields that are missing."""
        fields: dict[str, Any] = {}
        for name, value in sections.items():
            field = signature.output_fields[name]
            try:
                fields[name] = parse_value(value, field.annotation)
            except (ValueError, TypeError, pydantic.ValidationError) as exc:
                raise ParseFailure(self.name(), signature, completion,
                                   f"Failed to parse field {name} with value {value!r} from the LM response: "
                                   f"{_why(exc)}") from None
        fields = apply_output_field_defaults(signature, fields)
        if fields.keys() != signature.output_fields.keys():
            raise ParseFailure(self.name(), signature, completion, parsed_result=fields)
        return fields

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_SYSTEM_MESSAGE_PARTS = ("format_system_message", "format_field_description", "format_field_structure",
                         "format_task_description", "format_field_with_value", "_placeholders")


@functools.lru_cache(maxsize=1024)  # (bounded: classes made on the fly are not kept alive)
def _builtin_system_message(kind: type) -> bool:
    """Every method a system message is made with is dspex's own on ``kind`` (not a user's override)."""
    return all(getattr(getattr(kind, name, None), "__module__", "dspex.adapters").startswith("dspex.adapters.")
               for name in _SYSTEM_MESSAGE_PARTS)


def _why(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first.get("loc", ()))) or "value"
        return f"{where}: {first['msg']}" + (f" ({exc.error_count()} errors)" if exc.error_count() > 1 else "")
    return str(exc)


def _as_output_list(outputs: Any) -> list:
    """An LM's outputs as DSPy's list of str / {"text": ...} (a dspex Completion, or a single text, too)."""
    if outputs is None or isinstance(outputs, (str, Mapping)) or hasattr(outputs, "text"):
        outputs = [outputs]
    result = []
    for output in outputs:
        if not isinstance(output, (str, Mapping)) and hasattr(output, "text"):
            output = {"text": output.text}
        result.append(output)
    return result


def _tool_call_dict(call: Any) -> dict[str, Any]:
    """A provider's tool call (chat-completions or responses shape) as ``{"id", "name", "args"}``."""
    def read(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)

    function = read(call, "function") or {}
    arguments = read(function, "arguments") or read(call, "arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = loads_lenient(arguments)
        except ValueError:
            arguments = {}
    return {"id": read(call, "call_id") or read(call, "id"), "name": read(function, "name") or read(call, "name"),
            "args": arguments if isinstance(arguments, dict) else {}}


def _content_parts(messages: list[Message]) -> list[Message]:
    """Messages whose text carries custom-type values (images, audio, files) as content-part lists."""
    try:
        from .types.base_type import split_message_content_for_custom_types
    except ImportError:
        return messages
    return split_message_content_for_custom_types(messages)


__all__ = ["Adapter", "FieldInfoWithName", "ParseFailure", "Message", "NOT_SUPPLIED", "to_jsonable", "render_value",
           "without_fields", "serialize_for_json", "FieldKind"]
