"""A signature's fields: ``Field`` (answering DSPy's ``FieldInfo`` reads), ``InputField``/``OutputField``,
``infer_prefix`` and the checks on names and types."""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import keyword
import re
import types
import typing
import warnings
from dataclasses import dataclass, field as _dc_field, replace
from typing import Any, Callable, Literal, Mapping, Optional, Union

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..errors import SignatureError

RESERVED = frozenset({"usage", "cost", "raw", "trace", "completions", "completed"})
"""Field names that really clash: a Prediction's own attributes (and constructor keywords) and the Chat
adapter's end marker. Others (``items``, ``inputs``...) are fine: read them as ``pred["items"]`` where a
method of the same name shadows the attribute."""
_BASE_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                               "Optional": Optional, "Literal": Literal, "Any": Any, "tuple": tuple, "Union": Union,
                               "List": list, "Dict": dict, "Tuple": tuple, "set": set, "Set": set,
                               "frozenset": frozenset, "FrozenSet": frozenset, "bytes": bytes,
                               "None": type(None), "NoneType": type(None)}
_GENERIC = (list, dict, tuple, set, frozenset)
MAX_TYPE_DEPTH = 20  # nested type arguments a signature string may have (list[list[...]])
MAX_TYPE_TEXT = 1000
MAX_FRAMES = 100  # how far up the call stack a string signature looks for the custom types it names

IS_TYPE_UNDEFINED = "IS_TYPE_UNDEFINED"
"""DSPy's ``json_schema_extra`` key marking a field whose type was not written (so it defaulted to str)."""
DSPY_FIELD_ARG_NAMES = ("desc", "prefix", "format", "parser", "__dspy_field_type", IS_TYPE_UNDEFINED)
"""The keyword arguments of ``InputField``/``OutputField`` that land in ``json_schema_extra`` (as in DSPy)."""
PYDANTIC_CONSTRAINTS = {"gt": "greater than: ", "ge": "greater than or equal to: ", "lt": "less than: ",
                        "le": "less than or equal to: ", "min_length": "minimum length: ",
                        "max_length": "maximum length: ", "multiple_of": "a multiple of the given number: ",
                        "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: "}
"""Constraints a field may declare; DSPy shows them to the model as ``json_schema_extra["constraints"]``."""
_PYDANTIC_FIELD_ARGS = frozenset(inspect.signature(pydantic.Field).parameters) - {"extra"}


class SignatureTypeError(SignatureError, TypeError):
    """A signature class declares a field the wrong way (DSPy raises ``TypeError`` there); also a
    :class:`SignatureError`."""


class FieldKind(str, enum.Enum):
    """An input or an output (a ``str`` too, so saved programs keep their plain strings)."""

    INPUT = "input"
    OUTPUT = "output"


NO_DEFAULT = PydanticUndefined
"""A field without a default (pydantic's ``PydanticUndefined``, so ``field.default`` reads as in DSPy)."""


class _FrozenDict(dict):
    """``json_schema_extra`` as read from a field: a dict, but signatures are values, so writing to it
    raises (change a field with ``sig.with_updated_fields(name, desc=...)``); copies are plain dicts."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise SignatureError("a signature's fields are read-only: use sig.with_updated_fields(name, desc=..., "
                             "prefix=...) to get a signature with the change")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse  # type: ignore

    def copy(self) -> dict:
        return dict(self)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


@functools.lru_cache(maxsize=4096)
def infer_prefix(attribute_name: str) -> str:
    """A field name as words: ``"camelCaseText"`` -> ``"Camel Case Text"``, ``"snake_case"`` -> ``"Snake Case"``,
    ``"text2number"`` -> ``"Text 2 Number"``, ``"HTMLParser"`` -> ``"HTML Parser"`` (acronyms kept)."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", attribute_name)  # camelCase -> camel_Case
    text = re.sub(r"([A-Z])([A-Z][a-z])", r"\1_\2", text)  # HTTPSecure -> HTTP_Secure
    text = re.sub(r"([A-Za-z])(\d)", r"\1_\2", text)
    text = re.sub(r"(\d)([A-Za-z])", r"\1_\2", text)
    return " ".join(w if w.isupper() else w.capitalize() for w in text.split("_") if w)


@dataclass(frozen=True)
class Field:
    """One field: whether it is an input or output, its type, description, display prefix and default
    (an input with a default, or an ``Optional`` one, may be omitted; such an output the model leaves out
    takes its default, or None).

    ``extra`` holds the other keyword arguments DSPy's ``InputField``/``OutputField`` take (``format``,
    ``parser``, pydantic constraints such as ``ge=``, ``description``, ``json_schema_extra=``...). ``name``
    is set when the field is part of a signature (it fills in DSPy's default ``desc``/``prefix``) and
    ``typed`` says whether a type was written for it; neither takes part in equality.
    """

    kind: FieldKind
    annotation: Any = str
    desc: str = ""
    prefix: str = ""
    default: Any = NO_DEFAULT
    extra: Mapping[str, Any] = _dc_field(default_factory=dict, hash=False)
    name: str = _dc_field(default="", compare=False, hash=False, repr=False)
    typed: bool = _dc_field(default=True, compare=False, hash=False, repr=False)

    @functools.cached_property  # (a frozen field: its type's analysis, once; adapters ask every call)
    def optional(self) -> bool:
        if self.default is not NO_DEFAULT or "default_factory" in self.extra:
            return True
        args = typing.get_args(self.annotation)
        return typing.get_origin(self.annotation) in (typing.Union, types.UnionType) and type(None) in args

    def missing_value(self) -> Any:
        if self.default is NO_DEFAULT and "default_factory" in self.extra:
            return self.extra["default_factory"]()
        return None if self.default is NO_DEFAULT else self.default

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FieldKind):
            try:
                object.__setattr__(self, "kind", FieldKind(self.kind))
            except ValueError:
                raise SignatureError(f"a field's kind is {self.kind!r}; use 'input' or 'output'") from None
        if not isinstance(self.desc, str) or not isinstance(self.prefix, str):
            raise SignatureError(f"a field's desc and prefix must be strings, got desc={self.desc!r}, "
                                 f"prefix={self.prefix!r}")

    def display(self, name: str) -> str:
        """The label the text adapter writes before the value (an explicit prefix, without its colon)."""
        return self.prefix.rstrip().removesuffix(":").rstrip() or name.replace("_", " ").title()

    # --- DSPy's FieldInfo reads ---------------------------------------------------------------------

    @property
    def json_schema_extra(self) -> dict[str, Any]:
        """As DSPy's field has it: ``__dspy_field_type``, ``desc`` and ``prefix`` (DSPy's defaults ``${name}``
        and ``"Name:"`` when not given), ``format``/``parser``/``constraints`` when given, and any
        ``json_schema_extra=`` entries passed to the field. Read-only (and worked out once per name: a field
        is a frozen value, read for every call an adapter formats)."""
        cached = self.__dict__.get("_schema_extra")
        if cached is not None and cached[0] == (self.name, self.typed) and type(cached[1]) is _FrozenDict:
            return cached[1]
        out: dict[str, Any] = dict(self.extra.get("json_schema_extra") or {})
        for key in ("format", "parser"):
            if key in self.extra:
                out[key] = self.extra[key]
        constraints = ", ".join(f"{text}{self.extra[k]}" for k, text in PYDANTIC_CONSTRAINTS.items() if k in self.extra)
        if constraints:
            out["constraints"] = constraints
        if not self.typed:
            out[IS_TYPE_UNDEFINED] = True
        out["__dspy_field_type"] = self.kind.value
        if self.desc or self.name:
            out["desc"] = self.desc or f"${{{self.name}}}"
        if self.prefix or self.name:
            out["prefix"] = self.prefix or f"{infer_prefix(self.name)}:"
        frozen = _FrozenDict(out)
        self.__dict__["_schema_extra"] = ((self.name, self.typed), frozen)
        return frozen

    @property
    def description(self) -> str | None:
        """pydantic's ``description`` (set by ``description=``; DSPy's ``desc=`` is in ``json_schema_extra``)."""
        return self.extra.get("description")

    @property
    def default_factory(self) -> Callable[[], Any] | None:
        return self.extra.get("default_factory")

    @property
    def metadata(self) -> list:
        return []

    def is_required(self) -> bool:
        """No default (pydantic's meaning; an ``Optional`` type without a default is still required)."""
        return self.default is NO_DEFAULT and "default_factory" not in self.extra

    def get_default(self, *, call_default_factory: bool = False) -> Any:
        if self.default is NO_DEFAULT and "default_factory" in self.extra:
            return self.extra["default_factory"]() if call_default_factory else None
        return None if self.default is NO_DEFAULT else self.default

    def __str__(self) -> str:  # pydantic's FieldInfo form, as DSPy's signature repr shows it
        parts = [f"annotation={type_name(self.annotation)}", f"required={self.is_required()}"]
        if self.default is not NO_DEFAULT:
            parts.append(f"default={self.default!r}")
        if self.description is not None:
            parts.append(f"description={self.description!r}")
        parts.append(f"json_schema_extra={dict(self.json_schema_extra)!r}")
        return " ".join(parts)


def _make_field(kind: FieldKind, desc: str, prefix: str, default: Any, kwargs: dict[str, Any], where: str) -> Field:
    unknown = sorted(k for k in kwargs if k not in _PYDANTIC_FIELD_ARGS and k not in DSPY_FIELD_ARG_NAMES)
    if unknown:
        raise SignatureTypeError(f"{where}() got unknown argument(s) {', '.join(unknown)}: it takes desc, prefix, "
                                 "default, format, description, pydantic's Field arguments (ge=, max_length=...) and "
                                 "json_schema_extra=")
    for arg in ("format", "parser"):
        if arg in kwargs:
            warnings.warn(f"the {arg!r} argument of {where} has no effect (as in DSPy, where it is deprecated)",
                          DeprecationWarning, stacklevel=3)
    extra = dict(kwargs)
    if "__dspy_field_type" in extra:  # DSPy's own key: a field may be re-made from its json_schema_extra
        kind = FieldKind(extra.pop("__dspy_field_type"))
    typed = not extra.pop(IS_TYPE_UNDEFINED, False)
    if "default" in extra:
        default = extra.pop("default")
    desc = extra.pop("desc", desc)
    prefix = extra.pop("prefix", prefix)
    if not desc and isinstance(extra.get("description"), str):
        desc = extra["description"]
    if extra.get("json_schema_extra") is not None and not isinstance(extra["json_schema_extra"], Mapping):
        raise SignatureTypeError(f"{where}(json_schema_extra=...) must be a dict, got "
                                 f"{type(extra['json_schema_extra']).__name__}")
    return Field(kind, str, desc or "", prefix or "", default, extra, typed=typed)


def InputField(desc: str = "", prefix: str = "", default: Any = NO_DEFAULT, **kwargs: Any) -> Field:  # noqa: N802
    """Declare an input field in a signature class body (DSPy's keywords: ``desc``, ``prefix``, ``default``,
    ``format``, ``description``, pydantic constraints like ``max_length=``, ``json_schema_extra=``)."""
    return _make_field(FieldKind.INPUT, desc, prefix, default, kwargs, "InputField")


def OutputField(desc: str = "", prefix: str = "", default: Any = NO_DEFAULT, **kwargs: Any) -> Field:  # noqa: N802
    """Declare an output field in a signature class body (same keywords as :func:`InputField`)."""
    return _make_field(FieldKind.OUTPUT, desc, prefix, default, kwargs, "OutputField")


def _from_field_info(info: FieldInfo, where: str) -> Field:
    """A pydantic ``FieldInfo`` made by DSPy's own ``InputField``/``OutputField`` (its ``json_schema_extra``
    says ``__dspy_field_type``), as a dspex field."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    kind = extra.get("__dspy_field_type")
    if kind not in ("input", "output"):
        raise SignatureTypeError(f"{where} must be declared with InputField() or OutputField(), not a plain "
                                 f"pydantic Field (its json_schema_extra is {info.json_schema_extra!r})")
    kwargs = {k: v for k, v in extra.items() if k in DSPY_FIELD_ARG_NAMES and k not in ("desc", "prefix")}
    others = {k: v for k, v in extra.items() if k not in DSPY_FIELD_ARG_NAMES and k != "constraints"}
    if others:
        kwargs["json_schema_extra"] = others
    if info.description is not None:
        kwargs["description"] = info.description
    for meta in info.metadata:
        for key in PYDANTIC_CONSTRAINTS:
            if getattr(meta, key, None) is not None:
                kwargs[key] = getattr(meta, key)
    if info.default_factory is not None:
        kwargs["default_factory"] = info.default_factory
    desc = extra.get("desc") or ""
    prefix = extra.get("prefix") or ""
    field = _make_field(FieldKind(kind), desc, prefix, info.default, kwargs, "InputField" if kind == "input" else "OutputField")
    return replace(field, annotation=info.annotation if info.annotation is not None else str)


def _bind(field: Field, name: str) -> Field:
    """The field as part of a signature under ``name``: DSPy's default desc/prefix are not stored."""
    desc = "" if field.desc == f"${{{name}}}" else field.desc
    if field.name == name and desc == field.desc:
        return field
    return replace(field, name=name, desc=desc)


def type_name(annotation: Any) -> str:
    """Render a type the way signature strings write it (parses back to the same type)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return "Any"
    if annotation is None or annotation is type(None):
        return "None"
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and len(args) == 2:
            return f"Optional[{type_name(next(a for a in args if a is not type(None)))}]"
        return f"Union[{', '.join(type_name(a) for a in args)}]"
    if origin in _GENERIC:
        if not args:
            return origin.__name__
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation)


def custom_types_of(annotation: Any) -> dict[str, type]:
    """The classes a type uses beyond the built-in names (pydantic models, enums), by name."""
    found: dict[str, type] = {}
    if isinstance(annotation, type) and annotation.__name__ not in _BASE_TYPES:
        found[annotation.__name__] = annotation
    for arg in typing.get_args(annotation):
        if typing.get_origin(annotation) is not Literal:
            found.update(custom_types_of(arg))
    return found


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(f"{where}: {name!r} is not a valid field name (use a Python identifier like 'question')")
    if name in RESERVED or name.startswith("_"):
        raise SignatureError(f"{where}: field name {name!r} is reserved (it clashes with Prediction/Example "
                             f"attributes); rename it")


def _check_type(annotation: Any, where: str) -> None:
    try:
        pydantic.TypeAdapter(annotation)
    except Exception as exc:  # noqa: BLE001 - whatever pydantic cannot build a schema for is unsupported
        raise SignatureError(f"{where}: unsupported type {annotation!r}: {exc}") from None
