"""JSONAdapter: inputs under ``[[ ## field ## ]]`` markers, the answer one JSON object of the output fields.

The system message shows the outputs as a JSON object of placeholders; demos' answers are JSON objects.
Called as ``adapter(lm, ...)`` with an LM that takes ``response_format``, it asks for structured outputs
(a pydantic model of the outputs, OpenAI's strict schema) when the LM supports them, else JSON mode, as
DSPy does. Parsing takes the first JSON object in the text (in a code fence, after prose; JSON or a Python
literal) and validates each field against its type.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Mapping, Sequence, get_origin

import pydantic

from ..errors import AdapterParseError, LMError
from ..signature import SignatureMeta
from .base import FieldInfoWithName, ParseFailure
from . import chat_adapter
from .chat_adapter import ChatAdapter, _is_tool_calls
from .utils import (format_field_value, get_annotation_name, loads_lenient, serialize_for_json,
                    translate_field_type)

log = logging.getLogger(__name__)

# what makes JSONAdapter fall back from structured outputs to JSON mode, as DSPy's does: the outputs have no
# JSON schema pydantic can build, or the answer did not parse (an LMError is never a reason: it propagates)
STRUCTURED_REFUSED = (AdapterParseError, ValueError, TypeError, pydantic.PydanticUserError)


@lru_cache(maxsize=512)
def output_model(signature: SignatureMeta) -> type[pydantic.BaseModel]:
    """A pydantic model of the output fields (for validation and providers' response schemas)."""
    fields = {n: (f.annotation, pydantic.Field(description=f.desc or None)) for n, f in signature.output_fields.items()}
    return pydantic.create_model(f"{signature.__name__}Output", **fields)  # type: ignore[call-overload]


def _has_open_ended_mapping(signature: SignatureMeta) -> bool:
    """An output typed ``dict[...]``: strict structured outputs need every property named."""
    return any(get_origin(f.annotation) is dict for f in signature.output_fields.values())


def _strict(schema: dict) -> None:
    """OpenAI's strict schema: every object lists all its properties as required, no others allowed."""
    if schema.get("type") == "object":
        properties = schema.setdefault("properties", {})
        schema["required"] = list(properties)
        schema["additionalProperties"] = False
        for sub in properties.values():
            if isinstance(sub, dict):
                _strict(sub)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _strict(schema["items"])
    for key in ("$defs", "definitions"):
        for sub in schema.get(key, {}).values():
            _strict(sub)


def _get_structured_outputs_response_format(signature: SignatureMeta,
                                            use_native_function_calling: bool = True) -> type[pydantic.BaseModel]:
    """A pydantic model of the outputs whose JSON schema is OpenAI-strict (the ``response_format``)."""
    for name, field in signature.output_fields.items():
        if get_origin(field.annotation) is dict:
            raise ValueError(f"output field {name!r} is an open-ended mapping, which structured outputs cannot "
                             "describe")
    fields = {}
    for name, field in signature.output_fields.items():
        if use_native_function_calling and _is_tool_calls(field.annotation):
            continue  # the LM's native tool calls fill it
        default = ... if _no_default(field) else field.default
        fields[name] = (field.annotation, default)
    model = pydantic.create_model("DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    _strict(schema)
    model.model_json_schema = lambda *args, **kwargs: schema  # type: ignore[method-assign]
    return model


def _no_default(field: Any) -> bool:
    from ..signature import NO_DEFAULT

    return getattr(field, "default", NO_DEFAULT) is NO_DEFAULT


def _first_object(text: str) -> str | None:
    """The first balanced ``{...}`` in the text (braces inside strings ignored), or None."""
    start = text.find("{")
    while start >= 0:
        depth, quote, escaped = 0, None, False
        for i in range(start, len(text)):
            ch = text[i]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i + 1]
        start = text.find("{", start + 1)
    return None


def _load_object(text: str) -> Any:
    """The answer's JSON object: the whole text, else the first ``{...}`` in it that parses."""
    try:
        data = loads_lenient(text)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    body = _first_object(text)
    while body is not None:
        try:
            return loads_lenient(body)
        except ValueError:
            rest = text[text.find(body) + 1:]
            text, body = rest, _first_object(rest)
    return None


class JSONAdapter(ChatAdapter):
    """Asks for one JSON object with the output fields (structured outputs when the LM takes them)."""

    def __init__(self, callbacks: list | None = None, use_native_function_calling: bool = True,
                 parallel_tool_calls: bool | None = None) -> None:
        super().__init__(callbacks=callbacks, use_native_function_calling=use_native_function_calling,
                         parallel_tool_calls=parallel_tool_calls)

    # --- calling ---------------------------------------------------------------------------------------

    def _json_fallback(self, error: BaseException) -> None:
        return None  # already the fallback: its errors are raised

    def _json_mode_only(self, lm: Any, signature: SignatureMeta) -> bool | None:
        """None: the LM takes no response_format; True: JSON mode; False: structured outputs."""
        if "response_format" not in (getattr(lm, "supported_params", None) or ()):
            return None
        has_tool_calls = any(_is_tool_calls(f.annotation) for f in signature.output_fields.values())
        return (_has_open_ended_mapping(signature) or (not self.use_native_function_calling and has_tool_calls)
                or not getattr(lm, "supports_response_schema", False))

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                 demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        mode = self._json_mode_only(lm, signature)
        if mode is None:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        if mode:
            lm_kwargs["response_format"] = {"type": "json_object"}
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        try:
            lm_kwargs["response_format"] = _get_structured_outputs_response_format(
                signature, self.use_native_function_calling)
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        except LMError:
            raise
        except STRUCTURED_REFUSED:  # no schema for these outputs, or the answer did not follow it
            log.warning("Failed to use structured output format, falling back to JSON mode.")
            lm_kwargs["response_format"] = {"type": "json_object"}
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                    demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        mode = self._json_mode_only(lm, signature)
        if mode is None:
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        if mode:
            lm_kwargs["response_format"] = {"type": "json_object"}
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        try:
            lm_kwargs["response_format"] = _get_structured_outputs_response_format(
                signature, self.use_native_function_calling)
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        except LMError:
            raise
        except STRUCTURED_REFUSED:
            log.warning("Failed to use structured output format, falling back to JSON mode.")
            lm_kwargs["response_format"] = {"type": "json_object"}
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def response_format(self, signature: SignatureMeta) -> dict[str, Any]:
        """OpenAI-style ``response_format`` with the JSON schema (providers' JSON mode)."""
        return {"type": "json_schema", "json_schema": {"name": signature.__name__,
                                                       "schema": output_model(signature).model_json_schema()}}

    # --- messages --------------------------------------------------------------------------------------

    def format_field_structure(self, signature: SignatureMeta) -> str:
        parts = ["All interactions will be structured in the following way, with the appropriate values filled in.",
                 "Inputs will have the following structure:",
                 self.format_field_with_value(self._placeholders(signature.input_fields), role="user"),
                 "Outputs will be a JSON object with the following fields.",
                 self.format_field_with_value(self._placeholders(signature.output_fields), role="assistant")]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: SignatureMeta) -> str:
        def hint(info: Any) -> str:
            if _is_tool_calls(info.annotation):
                return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
            if info.annotation is not str:
                return f" (must be formatted as a valid Python {get_annotation_name(info.annotation)})"
            return ""

        order = ", then ".join(f"`{n}`{hint(f)}" for n, f in signature.output_fields.items())
        return f"Respond with a JSON object in the following order of fields: {order}."

    def format_assistant_message_content(self, signature: SignatureMeta, outputs: Mapping[str, Any],
                                         missing_field_message: str | None = None) -> str:
        return self.format_field_with_value({FieldInfoWithName(n, f): outputs.get(n, missing_field_message)
                                             for n, f in signature.output_fields.items()}, role="assistant")

    def format_field_with_value(self, fields_with_values: Mapping[FieldInfoWithName, Any], role: str = "user") -> str:
        """Inputs (``role="user"``) under markers; outputs (``role="assistant"``) as an indented JSON object."""
        if role == "user":
            return "\n\n".join(f"[[ ## {field.name} ## ]]\n{format_field_value(field.info, value)}"
                               for field, value in fields_with_values.items()).strip()
        data = {field.name: value for field, value in fields_with_values.items()}
        return json.dumps(serialize_for_json(data), indent=2, ensure_ascii=False)

    def format_finetune_data(self, signature: SignatureMeta, demos: Sequence[Mapping[str, Any]],
                             inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, list]:
        raise NotImplementedError("JSONAdapter has no fine-tuning data format yet; use ChatAdapter")

    # --- parsing ---------------------------------------------------------------------------------------

    def parse(self, signature: SignatureMeta, completion: str) -> dict[str, Any]:
        data = _load_object(completion)
        if not isinstance(data, dict):
            raise ParseFailure(self.name(), signature, completion, "LM response cannot be serialized to a JSON object.")
        sections = {k: v for k, v in data.items() if k in signature.output_fields}
        return self._parse_fields(signature, sections, completion)


chat_adapter._JSON_FALLBACK = JSONAdapter

__all__ = ["JSONAdapter", "output_model"]
