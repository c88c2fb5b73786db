"""JSONAdapter: ask for one JSON object matching the output schema; parse and validate it with pydantic."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Mapping, Sequence

import pydantic

from ..errors import AdapterParseError
from ..signature import SignatureMeta
from .base import NOT_SUPPLIED, Adapter, Message, field_description, render_value, to_jsonable

FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@lru_cache(maxsize=512)
def output_model(signature: SignatureMeta) -> type[pydantic.BaseModel]:
    """A pydantic model of the output fields (for validation and providers' response schemas)."""
    fields = {n: (f.annotation, pydantic.Field(description=f.desc or None)) for n, f in signature.output_fields.items()}
    return pydantic.create_model(f"{signature.__name__}Output", **fields)  # type: ignore[call-overload]


@lru_cache(maxsize=512)
def _schema_text(signature: SignatureMeta) -> str:
    return json.dumps(output_model(signature).model_json_schema())


class JSONAdapter(Adapter):
    """Renders inputs as field blocks and asks for a JSON object with exactly the output keys."""

    def response_format(self, signature: SignatureMeta) -> dict[str, Any]:
        """OpenAI-style ``response_format`` with the JSON schema (providers' JSON mode)."""
        return {"type": "json_schema", "json_schema": {"name": signature.__name__,
                                                       "schema": output_model(signature).model_json_schema()}}

    def system_message(self, signature: SignatureMeta) -> str:
        ins = "\n".join(f"- {field_description(n, f)}" for n, f in signature.input_fields.items())
        outs = "\n".join(f"- {field_description(n, f)}" for n, f in signature.output_fields.items())
        schema = _schema_text(signature)
        return (f"{signature.instructions}\n\nInput fields:\n{ins}\nOutput fields:\n{outs}\n\n"
                f"Answer with one JSON object with exactly the keys {', '.join(signature.output_fields)}, "
                f"following this JSON schema: {schema}")

    def user_message(self, signature: SignatureMeta, inputs: Mapping[str, Any]) -> str:
        return "\n\n".join(f"{n}: {render_value(inputs[n]) if n in inputs else NOT_SUPPLIED}"
                           for n in signature.input_fields)

    def format_answer(self, signature: SignatureMeta, values: Mapping[str, Any]) -> str:
        model = output_model(signature)
        present = {n: values[n] for n in signature.output_fields if n in values}
        if len(present) < len(signature.output_fields):  # a partial demo: no model validation
            return json.dumps(to_jsonable(present), ensure_ascii=False)
        return model(**present).model_dump_json()

    def format(self, signature: SignatureMeta, inputs: Mapping[str, Any],
               demos: Sequence[Mapping[str, Any]] = ()) -> list[Message]:
        self.check_inputs(signature, inputs)
        messages: list[Message] = [{"role": "system", "content": self.system_message(signature)}]
        for demo in demos:
            messages.append({"role": "user", "content": self.user_message(signature, demo)})
            messages.append({"role": "assistant", "content": self.format_answer(signature, demo)})
        messages.append({"role": "user", "content": self.user_message(signature, inputs)})
        return messages

    def parse(self, signature: SignatureMeta, text: str) -> dict[str, Any]:
        fenced = FENCE.search(text)
        body = fenced.group(1) if fenced else text
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end < start:
            raise AdapterParseError(signature, text, list(signature.output_fields), "no JSON object in the answer")
        try:
            obj = json.loads(body[start:end + 1])
        except json.JSONDecodeError as exc:
            raise AdapterParseError(signature, text, (), f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise AdapterParseError(signature, text, (), "the JSON answer is not an object")
        missing = [n for n in signature.output_fields if n not in obj]
        if missing:
            raise AdapterParseError(signature, text, missing, "the JSON object lacks these keys")
        try:
            validated = output_model(signature).model_validate({n: obj[n] for n in signature.output_fields})
        except pydantic.ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise AdapterParseError(signature, text, (), errors) from None
        return {n: getattr(validated, n) for n in signature.output_fields}
