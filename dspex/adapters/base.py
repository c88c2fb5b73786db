"""Adapter interface and the value rendering / coercion every adapter shares."""

from __future__ import annotations

import json
import typing
from functools import lru_cache
from typing import Any, Literal, Mapping, Sequence

import pydantic

from ..errors import AdapterParseError, SignatureError
from ..signature import Field, SignatureMeta, type_name

Message = dict[str, str]
NOT_SUPPLIED = "Not supplied for this particular example."


@lru_cache(maxsize=1024)
def _type_adapter(annotation: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(annotation)


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for any value pydantic can serialize (models, containers, scalars); an Example or
    a Prediction given as a value is its fields. Anything else is a SignatureError that says what to pass."""
    try:
        return _type_adapter(Any).dump_python(_plain(value), mode="json")
    except pydantic.PydanticSerializationError as exc:
        raise SignatureError(f"cannot render a {type(value).__name__} as a field value ({str(exc)[:120]}): pass "
                             "text, numbers, lists/dicts of them, or a pydantic model") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, dict):  # Example, Prediction
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, dict):
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


def is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return typing.get_origin(annotation) is Literal and all(isinstance(a, str) for a in typing.get_args(annotation))


def coerce(name: str, field: Field, text: str) -> Any:
    """Validate an LM's text for one field against its type (raises ValueError with the reason)."""
    annotation = field.annotation
    text = text.strip()
    if annotation is str:
        return text
    adapter = _type_adapter(annotation)
    if is_text(annotation):
        candidate = text.strip("'\"` ").strip()
        options = typing.get_args(annotation)
        for option in options:  # tolerate case: "Positive" for "positive"
            if candidate.lower() == option.lower():
                return option
        raise ValueError(f"field {name!r}: {text!r} is not one of {', '.join(map(repr, options))}")
    try:
        return adapter.validate_json(text)
    except pydantic.ValidationError:
        pass
    try:
        return adapter.validate_python(text)
    except pydantic.ValidationError as exc:
        raise ValueError(f"field {name!r}: {text!r} is not a valid {type_name(annotation)} "
                         f"({exc.errors()[0]['msg']})") from None


def field_description(name: str, field: Field) -> str:
    desc = f": {field.desc}" if field.desc else ""
    return f"`{name}` ({type_name(field.annotation)}){desc}"


class Adapter:
    """Turns (signature, inputs, demos) into chat messages, and an LM's text back into output values.

    ``prompt_style`` says how a model that can take either should read the messages: ``"chat"``
    (its chat template) or ``"completion"`` (the text continued as it stands); only local models use it.
    """

    prompt_style = "chat"

    def format(self, signature: SignatureMeta, inputs: Mapping[str, Any],
               demos: Sequence[Mapping[str, Any]] = ()) -> list[Message]:
        raise NotImplementedError

    def parse(self, signature: SignatureMeta, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def format_answer(self, signature: SignatureMeta, values: Mapping[str, Any]) -> str:
        """The text a perfect LM would answer with (used for demos and round-trip tests)."""
        raise NotImplementedError

    @staticmethod
    def check_inputs(signature: SignatureMeta, inputs: Mapping[str, Any]) -> None:
        """Every input field must be given: a missing one is the caller's error, not the LM's."""
        missing = [n for n, f in signature.input_fields.items() if n not in inputs and not f.optional]
        if missing:
            raise SignatureError(f"{signature.__name__}: missing input field(s) {', '.join(missing)}")

    def name(self) -> str:
        return type(self).__name__

    def _coerce_all(self, signature: SignatureMeta, sections: Mapping[str, str], text: str) -> dict[str, Any]:
        missing = [n for n, f in signature.output_fields.items() if n not in sections and not f.optional]
        if missing:
            raise AdapterParseError(signature, text, missing, "the answer lacks these output fields")
        values, problems = {}, []
        for name, field in signature.output_fields.items():
            if name not in sections:  # optional, and the model left it out
                values[name] = field.missing_value()
                continue
            try:
                values[name] = coerce(name, field, sections[name])
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise AdapterParseError(signature, text, (), "; ".join(problems))
        return values

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
