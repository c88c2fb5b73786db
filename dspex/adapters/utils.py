"""The value helpers every adapter shares, under DSPy's names (``dspy.adapters.utils``).

Rendering: :func:`format_field_value` (a value as prompt text), :func:`translate_field_type` (the
``{name}  # note: ...`` placeholder of a field in the system message), :func:`get_annotation_name`,
:func:`get_field_description_string`. Parsing: :func:`parse_value` (LM text -> the field's type, tolerant of
Python literals, single quotes, trailing commas), :func:`apply_output_field_defaults`.
"""

from __future__ import annotations

import ast
import enum
import inspect
import io
import json
import tokenize
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic

from ..signature import NO_DEFAULT

__all__ = ["annotation_allows_none", "apply_output_field_defaults", "serialize_for_json", "format_field_value",
           "translate_field_type", "find_enum_member", "parse_value", "get_annotation_name",
           "get_field_description_string", "loads_lenient", "field_kind", "field_desc"]

_MISSING = object()


@lru_cache(maxsize=1024)
def _type_adapter(annotation: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(annotation)


def _adapter_for(annotation: Any) -> pydantic.TypeAdapter:
    try:
        return _type_adapter(annotation)
    except TypeError:  # unhashable annotation (e.g. Annotated with a dict): build it each time
        return pydantic.TypeAdapter(annotation)


# --- reading a field (dspex's Field; anything with DSPy's attributes also works) -------------------------

def field_kind(info: Any) -> str | None:
    """``"input"`` / ``"output"`` for a dspex Field (or a DSPy-style FieldInfo), None when unknown."""
    kind = getattr(info, "kind", None)
    if kind is not None:
        return getattr(kind, "value", kind)
    extra = getattr(info, "json_schema_extra", None)
    if isinstance(extra, Mapping):
        return extra.get("__dspy_field_type")
    return None


def field_desc(name: str, info: Any) -> str:
    desc = getattr(info, "desc", None)
    if desc is None:
        extra = getattr(info, "json_schema_extra", None)
        desc = extra.get("desc") if isinstance(extra, Mapping) else ""
    desc = desc or ""
    return "" if desc == f"${{{name}}}" else desc


def _constraints(info: Any) -> str:
    value = getattr(info, "constraints", None)
    if value is None:
        extra = getattr(info, "json_schema_extra", None)
        value = extra.get("constraints") if isinstance(extra, Mapping) else None
    return value or ""


def annotation_allows_none(annotation: Any) -> bool:
    """Whether the type admits None (``str | None``, ``Optional[str]``, ``None``)."""
    if annotation is None or annotation is type(None):
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return bool(args) and annotation_allows_none(args[0])
    if origin in (Union, types.UnionType):
        return any(annotation_allows_none(a) for a in args)
    return False


def apply_output_field_defaults(signature: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The parsed fields in signature order, an optional output the LM left out taking its default (a
    default, a default factory, or None when its type admits None); a required one stays missing."""
    completed: dict[str, Any] = {}
    for name, info in signature.output_fields.items():
        if name in fields:
            completed[name] = fields[name]
            continue
        default = _default_of(info)
        if default is not _MISSING:
            completed[name] = default
        elif annotation_allows_none(getattr(info, "annotation", None)):
            completed[name] = None
    return completed


def _default_of(info: Any) -> Any:
    factory = getattr(info, "default_factory", None)
    if callable(factory):
        return factory()
    default = getattr(info, "default", _MISSING)
    if default is NO_DEFAULT or default is _MISSING or default is pydantic.fields.PydanticUndefined or default is ...:
        return _MISSING
    return default


# --- rendering ------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Example / Prediction values (mappings that are not dicts) as dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_plain(v) for v in value) if isinstance(value, list) else [_plain(v) for v in value]
    return value


def serialize_for_json(value: Any) -> Any:
    """JSON-ready data for a value (pydantic-aware); a value pydantic cannot serialize becomes ``str(value)``."""
    value = _plain(value)
    try:
        return _adapter_for(type(value)).dump_python(value, mode="json")
    except Exception:  # noqa: BLE001 - anything pydantic refuses is shown as its text
        try:
            return _type_adapter(Any).dump_python(value, mode="json")
        except Exception:  # noqa: BLE001
            return str(value)


def format_field_value(field_info: Any, value: Any, assume_text: bool = True) -> str | dict:
    """A field's value as prompt text: strings as they are, a list given for a ``str`` field as a numbered
    list of «quoted» items, structured values as JSON, other scalars as ``str``."""
    if isinstance(value, list) and getattr(field_info, "annotation", None) is str:
        text = _numbered(value)
    else:
        data = serialize_for_json(value)
        text = json.dumps(data, ensure_ascii=False) if isinstance(data, (dict, list)) else str(data)
    return text if assume_text else {"type": "text", "text": text}


def _numbered(items: list) -> str:
    if not items:
        return "N/A"
    if len(items) == 1:
        return _quote_blob(items[0])
    return "\n".join(f"[{i}] {_quote_blob(item)}" for i, item in enumerate(items, 1))


def _quote_blob(item: Any) -> str:
    text = item if isinstance(item, str) else str(item)
    if "\n" not in text and "«" not in text and "»" not in text:
        return f"«{text}»"
    indented = text.replace("\n", "\n    ")
    return f"«««\n    {indented}\n»»»"


def _type_first(data: Any) -> Any:
    """A JSON schema with ``type`` first and the other keys sorted (LMs follow it better), recursively."""
    if isinstance(data, Mapping):
        return {k: _type_first(data[k]) for k in sorted(data, key=lambda k: (k != "type", k))}
    if isinstance(data, list):
        return [_type_first(v) for v in data]
    return data


def json_schema_of(annotation: Any) -> dict:
    return _type_first(_adapter_for(annotation).json_schema())


def _is_subclass(annotation: Any, base: type) -> bool:
    return inspect.isclass(annotation) and not get_args(annotation) and _safe_issubclass(annotation, base)


def _safe_issubclass(cls: Any, base: type) -> bool:
    try:
        return issubclass(cls, base)
    except TypeError:
        return False


def _is_named_type(annotation: Any, name: str) -> bool:
    """A dspex custom type by its class name (the types package sits beside this module, built separately)."""
    return inspect.isclass(annotation) and annotation.__name__ == name and annotation.__module__.startswith("dspex.")


def translate_field_type(field_name: str, field_info: Any) -> str:
    """The placeholder of a field in the system message: ``{name}``, and for typed outputs a note saying
    what the value must be (True/False, one number, one of the options, a JSON schema)."""
    annotation = getattr(field_info, "annotation", str)
    if field_kind(field_info) == "input" or annotation is str or _is_named_type(annotation, "Reasoning"):
        note = ""
    elif annotation is bool:
        note = "must be True or False"
    elif annotation in (int, float):
        note = f"must be a single {annotation.__name__} value"
    elif _is_subclass(annotation, enum.Enum):
        note = "must be one of: " + "; ".join(str(member.value) for member in annotation)
    elif get_origin(annotation) is Literal:
        note = "must exactly match (no extra characters) one of: " + "; ".join(str(a) for a in get_args(annotation))
    elif (inspect.isclass(annotation) and any(_is_named_type(base, "Code") for base in annotation.__mro__)
          and callable(getattr(annotation, "description", None)) and annotation.description()):
        note = ""  # Code (and Code["python"]) describes itself at length: no schema block beside it
    else:
        note = "must adhere to the JSON schema: " + json.dumps(json_schema_of(annotation), ensure_ascii=False)
    return f"{{{field_name}}}" + (" " * 8 + f"# note: the value you produce {note}" if note else "")


def _literal_repr(text: str) -> str:
    if "'" in text and '"' not in text:
        return f'"{text}"'
    if "'" in text:
        return "'" + text.replace("'", "\\'") + "'"
    return f"'{text}'"


def get_annotation_name(annotation: Any) -> str:
    """A type as the prompt names it: ``list[str]``, ``Literal['a', 'b']``, ``UnionType[str, NoneType]``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None:
        if _is_named_type(annotation, "Reasoning"):
            return "str"  # as ChainOfThought's reasoning text always was
        name = getattr(annotation, "__name__", None)
        return name if name is not None else str(annotation)
    if origin is Literal:
        inner = ", ".join(_literal_repr(a) if isinstance(a, str) else get_annotation_name(a) for a in args)
    else:
        inner = ", ".join(get_annotation_name(a) for a in args)
    return f"{get_annotation_name(origin)}[{inner}]"


_NOTES: dict[Any, str] = {}  # annotation -> its notes (types are values; a type's description is its class's)


def _custom_type_notes(annotation: Any) -> str:
    """``Type description of X: ...`` lines for the dspex custom types a field's type uses (worked out once
    per annotation: a signature's system message is formatted for every call)."""
    try:
        return _NOTES[annotation]
    except (KeyError, TypeError):  # not seen yet, or not hashable (then not remembered)
        pass
    notes = _type_notes(annotation)
    try:
        if len(_NOTES) < 4096:
            _NOTES[annotation] = notes
    except TypeError:
        pass  # an unhashable annotation: worked out each time
    return notes


def _type_notes(annotation: Any) -> str:
    try:
        from .types.base_type import Type as CustomType
    except Exception:  # noqa: BLE001 - the types package is optional here
        return ""
    extract = getattr(CustomType, "extract_custom_type_from_annotation", None)
    if extract is None:
        return ""
    notes = ""
    try:
        found = extract(annotation)
    except Exception:  # noqa: BLE001
        return ""
    for custom in found:
        described = custom.description() if callable(getattr(custom, "description", None)) else ""
        if described:
            notes += f"\n    Type description of {get_annotation_name(custom)}: {described}"
    return notes


def get_field_description_string(fields: Mapping[str, Any]) -> str:
    """``1. `name` (type): description`` per field (the "Your input fields are" lists)."""
    lines = []
    for i, (name, info) in enumerate(fields.items(), 1):
        annotation = getattr(info, "annotation", str)
        line = f"{i}. `{name}` ({get_annotation_name(annotation)}): {field_desc(name, info)}"
        line += _custom_type_notes(annotation)
        constraints = _constraints(info)
        if constraints:
            line += f"\nConstraints: {constraints}"
        lines.append(line)
    return "\n".join(lines).strip()


# --- parsing ----------------------------------------------------------------------------------------------

_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}


def loads_lenient(text: str) -> Any:
    """Data from JSON or a Python literal (single quotes, ``True``/``true``, trailing commas, ``1_000``);
    raises ValueError when the text is neither."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:  # JSON's words inside a Python-style literal: {'a': true}
        tokens = [(t.type, _JSON_WORDS.get(t.string, t.string) if t.type == tokenize.NAME else t.string)
                  for t in tokenize.generate_tokens(io.StringIO(text.strip()).readline)]
        return ast.literal_eval(tokenize.untokenize(tokens).strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, tokenize.TokenError,
            IndentationError):
        raise ValueError(f"not JSON or a Python literal: {text[:80]!r}") from None


def find_enum_member(enum_cls: type[enum.Enum], identifier: Any) -> enum.Enum:
    """The member whose value is ``identifier``, else the one of that name (ValueError otherwise)."""
    for member in enum_cls:
        if member.value == identifier:
            return member
    if isinstance(identifier, str) and identifier in enum_cls.__members__:
        return enum_cls[identifier]
    if isinstance(identifier, str):  # tolerate quotes and case: "'Positive'" for "positive"
        bare = identifier.strip().strip("'\"` ").strip()
        for member in enum_cls:
            if str(member.value).lower() == bare.lower() or member.name.lower() == bare.lower():
                return member
    raise ValueError(f"{identifier!r} is not a valid name or value for the enum {enum_cls.__name__}")


def _parse_literal(value: Any, allowed: tuple) -> Any:
    if value in allowed:
        return value
    if isinstance(value, str):
        candidate = value.strip()
        for head in ("Literal[", "str["):
            if candidate.startswith(head) and candidate.endswith("]"):
                candidate = candidate[len(head):-1]
        if len(candidate) > 1 and candidate[0] == candidate[-1] and candidate[0] in "\"'":
            candidate = candidate[1:-1]
        if candidate in allowed:
            return candidate
        folded = [a for a in allowed if isinstance(a, str) and a.lower() == candidate.lower()]
        if len(folded) == 1:  # "Positive" for "positive"
            return folded[0]
        for option in allowed:  # Literal[1, True]: the text of a non-string option
            if not isinstance(option, str) and candidate == str(option):
                return option
    raise ValueError(f"{value!r} is not one of {allowed!r}")


def parse_value(value: Any, annotation: Any) -> Any:
    """The LM's value (text, or data from a JSON answer) as the field's type; raises ValueError /
    pydantic.ValidationError saying why not."""
    if annotation is str:
        return str(value)
    if inspect.isclass(annotation) and _safe_issubclass(annotation, enum.Enum):
        return find_enum_member(annotation, value)
    origin = get_origin(annotation)
    if origin is Literal:
        return _parse_literal(value, get_args(annotation))
    adapter = _adapter_for(annotation)
    if not isinstance(value, str):
        return adapter.validate_python(value)
    args = get_args(annotation)
    if origin in (Union, types.UnionType) and type(None) in args and str in args:
        return adapter.validate_python(value)  # optional text stays text
    try:
        candidate = loads_lenient(value)
    except ValueError:
        candidate = value
    try:
        return adapter.validate_python(candidate)
    except pydantic.ValidationError:
        if candidate is not value and _accepts_text(annotation):
            return adapter.validate_python(value)  # a custom type with its own parser for the raw text
        raise


def _accepts_text(annotation: Any) -> bool:
    return inspect.isclass(annotation) and _safe_issubclass(annotation, pydantic.BaseModel) \
        and annotation.__module__.startswith("dspex.")


def is_typeddict(annotation: Any) -> bool:
    import typing_extensions

    return typing.is_typeddict(annotation) or typing_extensions.is_typeddict(annotation)
