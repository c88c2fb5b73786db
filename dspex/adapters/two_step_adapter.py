"""TwoStepAdapter: a free-form prompt for the main LM, then a second (smaller) LM extracts the fields.

Reasoning models answer better without a rigid output format; the extraction model then reads their
answer with the ChatAdapter (JSON fallback included) into the signature's outputs, as DSPy's
``dspy.TwoStepAdapter(extraction_model)`` does.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import ConfigError, LMError
from ..signature import Field, FieldKind, SignatureMeta, make_signature
from ..utils.syncify import caller_awaits, on_caller_loop
from .base import Adapter, Message, ParseFailure, _as_output_list
from .chat_adapter import ChatAdapter
from .utils import format_field_value, get_field_description_string


class TwoStepAdapter(Adapter):
    """``TwoStepAdapter(extraction_model)``: any LM callable as ``lm(messages=...)`` extracts the outputs."""

    parse_calls_lm = True

    def __init__(self, extraction_model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(extraction_model):
            raise ConfigError("TwoStepAdapter(extraction_model): pass an LM (a dspex.BaseLM / dspex.LM), got "
                              f"{type(extraction_model).__name__}")
        self.extraction_model = extraction_model

    def format(self, signature: SignatureMeta, demos: Sequence[Mapping[str, Any]],
               inputs: Mapping[str, Any]) -> list[Message]:
        """The task in plain words, the demos as ``name: value`` turns, then the inputs."""
        messages: list[Message] = [{"role": "system", "content": self.format_task_description(signature)}]
        messages.extend(self.format_demos(signature, list(demos or ())))
        messages.append({"role": "user", "content": self.format_user_message_content(signature, inputs)})
        return messages

    def format_task_description(self, signature: SignatureMeta) -> str:
        parts = ["You are a helpful assistant that can solve tasks based on user input.",
                 "As input, you will be provided with:\n" + get_field_description_string(signature.input_fields),
                 "Your outputs must contain:\n" + get_field_description_string(signature.output_fields),
                 "You should lay out your outputs in detail so that your answer can be understood by another agent"]
        if signature.instructions:
            parts.append(f"Specific instructions: {signature.instructions}")
        return "\n".join(parts)

    def format_user_message_content(self, signature: SignatureMeta, inputs: Mapping[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        lines = [f"{n}: {format_field_value(f, inputs[n])}" for n, f in signature.input_fields.items() if n in inputs]
        return "\n\n".join([prefix, *lines, suffix]).strip()

    def format_assistant_message_content(self, signature: SignatureMeta, outputs: Mapping[str, Any],
                                         missing_field_message: str | None = None) -> str:
        lines = [f"{n}: {format_field_value(f, outputs[n])}"
                 for n, f in signature.output_fields.items() if n in outputs]
        return "\n\n".join(lines).strip()

    def _extractor_signature(self, signature: SignatureMeta) -> SignatureMeta:
        """``text -> <the original outputs>``: what the extraction model answers."""
        fields = {"text": Field(FieldKind.INPUT, str), **signature.output_fields}
        names = ", ".join(f"`{n}`" for n in signature.output_fields)
        instructions = (f"The input is a text that should contain all the necessary information to produce the "
                        f"fields {names}. Your job is to extract the fields from the text verbatim. Extract "
                        "precisely the appropriate value (content) for each field.")
        return make_signature(fields, instructions)

    def parse(self, signature: SignatureMeta, completion: str) -> dict[str, Any]:
        """The extraction model's reading of the main LM's answer."""
        extractor = self._extractor_signature(signature)
        try:
            if caller_awaits(getattr(self.extraction_model, "acall", None)):
                # inside ``await program.acall(...)``: the extraction model's async call, on the caller's loop
                return on_caller_loop(ChatAdapter().acall(self.extraction_model, {}, extractor, [],
                                                          {"text": completion}))[0]
            return ChatAdapter()(self.extraction_model, {}, extractor, [], {"text": completion})[0]
        except LMError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to extract is a parse failure of this answer
            raise ParseFailure(self.name(), signature, completion,
                               f"Failed to parse response from the original completion: {exc}") from exc

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: SignatureMeta,
                    demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = self.format(signature, demos, inputs)
        outputs = await lm.acall(messages=messages, **lm_kwargs)
        extractor = self._extractor_signature(signature)
        calls_out = self._get_tool_call_output_field_name(signature)
        values = []
        for output in _as_output_list(outputs):
            text, logprobs, tool_calls = output, None, None
            if isinstance(output, Mapping):
                text, logprobs, tool_calls = output.get("text"), output.get("logprobs"), output.get("tool_calls")
            try:
                value = (await ChatAdapter().acall(self.extraction_model, {}, extractor, [], {"text": text}))[0]
            except LMError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise ParseFailure(self.name(), signature, str(output),
                                   f"Failed to parse response from the original completion: {exc}") from exc
            if tool_calls and calls_out:
                from .base import _tool_call_dict

                calls_type = signature.output_fields[calls_out].annotation
                value[calls_out] = calls_type.from_dict_list([_tool_call_dict(c) for c in tool_calls])
            if logprobs is not None:
                value["logprobs"] = logprobs
            values.append(value)
        return values


__all__ = ["TwoStepAdapter"]
