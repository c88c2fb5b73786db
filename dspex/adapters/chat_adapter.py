"""ChatAdapter: DSPy's ``[[ ## field ## ]]`` marker format, demos as user/assistant turns.

The system message lists the fields, shows the structure (each field under its marker, typed outputs with
a note on what the value must be, ``[[ ## completed ## ]]`` at the end) and the task; each user message
ends with a reminder of the output markers. Parsing reads the sections under the markers (tolerant of
whitespace, order and text after a marker on its line); a missing required output is an AdapterParseError.
Called as ``adapter(lm, ...)``, a failed parse is retried once with the JSONAdapter
(``use_json_adapter_fallback``), as in DSPy.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, Mapping, Sequence

from ..errors import LMError
from ..signature import SignatureMeta
from .base import Adapter, FieldInfoWithName, Message
from .utils import (format_field_value, get_annotation_name, get_field_description_string,
                    translate_field_type)

field_header_pattern = re.compile(r"\[\[ ## (\w+) ## \]\]")
MARKER = field_header_pattern  # dspex's earlier name

# the JSONAdapter class, set by json_adapter.py (which imports this module; the package imports both)
_JSON_FALLBACK: type[Adapter] | None = None

_TOOL_CALLS_HINT = ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'


def _is_tool_calls(annotation: Any) -> bool:
    return isinstance(annotation, type) and annotation.__name__ == "ToolCalls"


class ChatAdapter(Adapter):
    """Field markers, DSPy's prompt text; falls back to the JSONAdapter when its answer does not parse."""

    def __init__(self, callbacks: list | None = None, use_native_function_calling: bool = False,
                 native_response_types: list[type] | None = None, use_json_adapter_fallback: bool = True,
                 parallel_tool_calls: bool | None = None) -> None:
        super().__init__(callbacks=callbacks, use_native_function_calling=use_native_function_calling,
                         native_response_types=native_response_types, parallel_tool_calls=parallel_tool_calls)
        self.use_json_adapter_fallback = use_json_adapter_fallback

    # --- calling, with the JSON fallback ---------------------------------------------------------------

    def _json_fallback(self, error: BaseException) -> Adapter | None:
        """The adapter to retry with after ``error`` (None: raise it): the JSONAdapter, unless the LM failed
        or the fallback is off."""
        if isinstance(error, LMError) or not self.use_json_adapter_fallback or _JSON_FALLBACK is None:
            return None
        return _JSON_FALLBACK(use_native_function_calling=self.use_native_function_calling,
                              parallel_tool_calls=self.parallel_tool_calls)

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                 demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        except Exception as exc:
            fallback = self._json_fallback(exc)
            if fallback is None:
                raise
            return fallback(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                    demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        except Exception as exc:
            fallback = self._json_fallback(exc)
            if fallback is None:
                raise
            return await fallback.acall(lm, lm_kwargs, signature, demos, inputs)

    # --- the system message --------------------------------------------------------------------------

    def format_field_description(self, signature: SignatureMeta) -> str:
        return (f"Your input fields are:\n{get_field_description_string(signature.input_fields)}\n"
                f"Your output fields are:\n{get_field_description_string(signature.output_fields)}")

    def _placeholders(self, fields: Mapping[str, Any]) -> dict[FieldInfoWithName, str]:
        return {FieldInfoWithName(name, info): translate_field_type(name, info) for name, info in fields.items()}

    def format_field_structure(self, signature: SignatureMeta) -> str:
        parts = ["All interactions will be structured in the following way, with the appropriate values filled in.",
                 self.format_field_with_value(self._placeholders(signature.input_fields)),
                 self.format_field_with_value(self._placeholders(signature.output_fields)),
                 "[[ ## completed ## ]]\n"]
        return "\n\n".join(parts).strip()

    def format_task_description(self, signature: SignatureMeta) -> str:
        lines = textwrap.dedent(signature.instructions).splitlines()
        objective = "".join("\n" + " " * 8 + line for line in lines)
        return f"In adhering to this structure, your objective is: {objective}"

    # --- user and assistant turns --------------------------------------------------------------------

    def format_user_message_content(self, signature: SignatureMeta, inputs: Mapping[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        parts = [prefix]
        for name, info in signature.input_fields.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{format_field_value(info, inputs[name])}")
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            if requirements is not None:
                parts.append(requirements)
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: SignatureMeta) -> str:
        """The short reminder of the output markers that ends the last user message."""
        def hint(info: Any) -> str:
            if _is_tool_calls(info.annotation):
                return _TOOL_CALLS_HINT
            if info.annotation is not str:
                return f" (must be formatted as a valid Python {get_annotation_name(info.annotation)})"
            return ""

        markers = ", then ".join(f"`[[ ## {n} ## ]]`{hint(f)}" for n, f in signature.output_fields.items())
        return (f"Respond with the corresponding output fields, starting with the field {markers}, "
                "and then ending with the marker for `[[ ## completed ## ]]`.")

    def format_assistant_message_content(self, signature: SignatureMeta, outputs: Mapping[str, Any],
                                         missing_field_message: str | None = None) -> str:
        body = self.format_field_with_value({FieldInfoWithName(n, f): outputs.get(n, missing_field_message)
                                             for n, f in signature.output_fields.items()})
        return body + "\n\n[[ ## completed ## ]]\n"

    def format_field_with_value(self, fields_with_values: Mapping[FieldInfoWithName, Any]) -> str:
        """Each field under its marker, blank-line separated."""
        return "\n\n".join(f"[[ ## {field.name} ## ]]\n{format_field_value(field.info, value)}"
                           for field, value in fields_with_values.items()).strip()

    def format_finetune_data(self, signature: SignatureMeta, demos: Sequence[Mapping[str, Any]],
                             inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, list[Message]]:
        """One training example in OpenAI's chat fine-tuning shape: the prompt and the ideal answer."""
        messages = self.format(signature, demos, inputs)
        answer = {"role": "assistant", "content": self.format_assistant_message_content(signature, outputs)}
        return {"messages": [*messages, answer]}

    # --- parsing -------------------------------------------------------------------------------------

    def parse(self, signature: SignatureMeta, completion: str) -> dict[str, Any]:
        sections: list[tuple[str | None, list[str]]] = [(None, [])]
        for line in completion.splitlines():
            stripped = line.strip()
            match = field_header_pattern.match(stripped)
            if match:
                rest = stripped[match.end():].strip()
                sections.append((match.group(1), [rest] if rest else []))
            else:
                sections[-1][1].append(line)
        found: dict[str, str] = {}
        for name, lines in sections:
            if name in signature.output_fields and name not in found:
                found[name] = "\n".join(lines).strip()
        return self._parse_fields(signature, found, completion)


__all__ = ["ChatAdapter", "FieldInfoWithName", "field_header_pattern"]
