"""Signatures: the typed input -> output contract of an LM call.

``Signature("question, context -> answer")`` and ``class Classify(Signature)`` both make a new
signature *class* (as in DSPy). Signatures are values: edits (``with_instructions``, ``prepend``,
``append``, ``insert``, ``delete``, ``with_updated_fields``, ``load_state``) return new signatures; equality
and hashing are structural; they pickle by value.

DSPy's reading API works on them: ``sig.fields[name]`` answers ``.annotation``, ``.json_schema_extra``
(``"__dspy_field_type"``, ``"desc"``, ``"prefix"``, ``"format"``, ``"constraints"``...), ``.description``,
``.default`` and ``is_required()`` as a pydantic ``FieldInfo`` made by DSPy's ``InputField`` would, and a
string signature finds the custom types it names in the caller's scope (``"x: MyModel -> y: Outer.Inner"``)
unless ``custom_types=`` is given.
"""

from __future__ import annotations

import ast
import copy
import copyreg
import enum
import inspect
import keyword
import re
import sys
import types
import typing
import warnings
from dataclasses import dataclass, field as _dc_field, replace
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional, Union

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .errors import SignatureError

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

    @property
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
        ``json_schema_extra=`` entries passed to the field. Read-only."""
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
        return _FrozenDict(out)

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


def _frame_lookup(frame: Any) -> Callable[[str], Any]:
    """Finds a name as the caller would see it: the locals, then the globals, of ``frame`` and the frames
    above it (at most MAX_FRAMES), as DSPy resolves the custom types a string signature names."""
    def lookup(name: str) -> Any:
        current, depth = frame, 0
        while current is not None and depth < MAX_FRAMES:
            if name in current.f_locals:
                return current.f_locals[name]
            if name in current.f_globals:
                return current.f_globals[name]
            current, depth = current.f_back, depth + 1
        raise KeyError(name)
    return lookup


class _TypeParser:
    """Turns ``list[str]``-style text into typing objects (no eval): built-in names, ``custom_types``, and,
    when given a ``lookup`` (a string signature without ``custom_types``), names from the caller's scope."""

    def __init__(self, custom: Mapping[str, Any], lookup: Callable[[str], Any] | None = None) -> None:
        self.names = {**_BASE_TYPES, **custom}
        self.lookup = lookup

    def parse(self, text: str, where: str) -> Any:
        if len(text) > MAX_TYPE_TEXT:
            raise SignatureError(f"{where}: the type is {len(text)} characters long (at most {MAX_TYPE_TEXT})")
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            raise SignatureError(f"{where}: cannot parse type {text.strip()[:100]!r}") from None
        return self.build(node, where)

    def _unknown(self, name: str, where: str) -> SignatureError:
        allowed = ", ".join(sorted(n for n in _BASE_TYPES if n not in ("List", "Dict", "Set", "FrozenSet")))
        scope = "not defined where the signature is made, " if self.lookup else ""
        return SignatureError(f"{where}: unknown type {name!r} ({scope}built-in: {allowed}; define or import it "
                              f"before making the signature, or pass custom_types={{'{name}': {name}}})")

    def name(self, name: str, where: str) -> Any:
        if name in self.names:
            return self.names[name]
        if self.lookup is not None:
            try:
                return self.lookup(name)
            except KeyError:
                pass
        raise self._unknown(name, where)

    def build(self, node: ast.AST, where: str, depth: int = 0) -> Any:
        if depth > MAX_TYPE_DEPTH:
            raise SignatureError(f"{where}: the type nests more than {MAX_TYPE_DEPTH} levels deep")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
            return Union[self.build(node.left, where, depth + 1), self.build(node.right, where, depth + 1)]
        if isinstance(node, ast.Name):
            return self.name(node.id, where)
        if isinstance(node, ast.Attribute):  # Outer.Inner, module.Type
            dotted = ast.unparse(node)
            if dotted in self.names:
                return self.names[dotted]
            base = self.build(node.value, where, depth + 1)
            if any(base is t for t in _BASE_TYPES.values()):
                raise SignatureError(f"{where}: cannot understand type expression {dotted!r}")
            try:
                return getattr(base, node.attr)
            except Exception:  # noqa: BLE001 - an attribute the object does not have (or cannot give)
                raise SignatureError(f"{where}: unknown type {dotted!r}: {type_name(base)} has no attribute "
                                     f"{node.attr!r}") from None
        if isinstance(node, ast.Subscript):
            base = self.build(node.value, where, depth + 1)
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if not items:
                raise SignatureError(f"{where}: {ast.unparse(node)!r} has no type arguments")
            if base is Literal:
                if not all(isinstance(i, ast.Constant) and isinstance(i.value, (str, int, bool, type(None)))
                           for i in items):
                    raise SignatureError(f"{where}: Literal[...] takes str, int, bool or None constants only")
                return Literal[tuple(i.value for i in items)]  # type: ignore[misc]
            if any(base is t for t in (str, int, float, bool, bytes, type(None), Any)):
                raise SignatureError(f"{where}: {ast.unparse(node.value)!r} takes no type arguments")
            args = tuple(Ellipsis if isinstance(i, ast.Constant) and i.value is Ellipsis and base is tuple
                         else self.build(i, where, depth + 1) for i in items)
            try:
                return base[args if len(args) > 1 else args[0]]
            except Exception as exc:  # noqa: BLE001 - any failure is a bad type argument
                raise SignatureError(f"{where}: bad type arguments for {ast.unparse(node.value)!r}: {exc}") from None
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        raise SignatureError(f"{where}: cannot understand type expression {ast.unparse(node)!r}")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_signature_string(spec: str, custom_types: Mapping[str, Any] | None = None,
                           lookup: Callable[[str], Any] | None = None) -> dict[str, Field]:
    """``"a, b: int -> c: list[str]"`` to an ordered ``{name: Field}``; SignatureError says what is wrong.
    Type names come from the built-ins, ``custom_types`` and, given ``lookup``, the caller's scope."""
    if not isinstance(spec, str):
        raise SignatureError(f"a signature string is expected, got {type(spec).__name__}")
    if spec.count("->") != 1:
        problem = "missing '->'" if "->" not in spec else "more than one '->'"
        raise SignatureError(f"signature {spec!r}: {problem}; write it like 'question, context -> answer'")
    parser = _TypeParser(custom_types or {}, lookup)
    fields: dict[str, Field] = {}
    for side, kind in zip(spec.split("->"), ("input", "output")):
        if not side.strip():
            raise SignatureError(f"signature {spec!r}: the {kind} side is empty; name at least one {kind} field")
        for raw in _split_top_level(side):
            item = raw.strip()
            where = f"signature {spec!r}, {kind} field {item!r}"
            if not item:
                raise SignatureError(f"signature {spec!r}: empty field name on the {kind} side (stray comma?)")
            name, colon, type_text = item.partition(":")
            name = name.strip()
            _check_name(name, where)
            annotation = parser.parse(type_text, where) if colon else str
            if name in fields:
                if fields[name].kind != kind:
                    raise SignatureError(f"signature {spec!r}: field {name!r} is used as both input and output; "
                                         "input and output fields must have distinct names")
                raise SignatureError(f"signature {spec!r}: field {name!r} appears twice")
            fields[name] = Field(FieldKind(kind), annotation, name=name, typed=bool(colon))
    return fields


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return re.match(r"^\s*(typing\.)?ClassVar\b", annotation) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _as_field(name: Any, value: Any, where: str) -> Field:
    """A value of ``make_signature``'s mapping: a field, DSPy's ``(type, field)`` pair, or a DSPy pydantic field."""
    _check_name(name, where)
    type_ = NO_DEFAULT
    if isinstance(value, tuple):
        if len(value) != 2:
            raise SignatureError(f"{where}: field {name!r} is a tuple of {len(value)}; write (type, InputField()) "
                                 "or (type, OutputField())")
        type_, value = value
    if isinstance(value, FieldInfo):
        value = _from_field_info(value, f"{where}, field {name!r}")
    if not isinstance(value, Field):
        raise SignatureError(f"{where}: field {name!r} must be InputField(...), OutputField(...) or (type, field), "
                             f"got {type(value).__name__}")
    if type_ is not NO_DEFAULT:
        value = replace(value, annotation=str if type_ is None else type_, typed=type_ is not None)
    return _bind(value, name)


def _ordered(fields: Mapping[str, Field]) -> dict[str, Field]:
    """Inputs first, then outputs (DSPy's ``fields`` order), each in declaration order."""
    return {**{n: f for n, f in fields.items() if f.kind == "input"},
            **{n: f for n, f in fields.items() if f.kind == "output"}}


def _resolve_annotation(text: str, ns: dict, where: str, local: Mapping[str, Any] | None = None) -> Any:
    """String annotations (``from __future__ import annotations``) resolve in the defining module, then in
    the function the class is defined in."""
    module = sys.modules.get(ns.get("__module__", ""))
    scope = {**_BASE_TYPES, **(vars(module) if module else {}), **(local or {}), **ns}
    try:
        return eval(text, scope)  # noqa: S307 - as typing.get_type_hints does for the user's own module
    except Exception as exc:  # noqa: BLE001 - any failure is a bad annotation
        raise SignatureError(f"{where}: cannot resolve type {text!r}: {exc}") from None


def _validated(fields: dict[str, Field], where: str) -> dict[str, Field]:
    for name, field in fields.items():
        if not isinstance(field, Field):
            raise SignatureError(f"{where}: field {name!r} is a {type(field).__name__}; use InputField/OutputField")
        _check_name(name, where)
        _check_type(field.annotation, f"{where}, field {name!r}")
    return _ordered({n: _bind(f, n) for n, f in fields.items()})


class SignatureMeta(type):
    """Makes signature classes: from a class body, or from ``Signature("a -> b")``."""

    def __new__(mcs, name: str, bases: tuple, ns: dict, **kwargs: Any) -> "SignatureMeta":
        where = f"signature class {name}"
        annotations = dict(ns.get("__annotations__", {}))
        fields: dict[str, Field] = {}
        for base in reversed(bases):
            fields.update(getattr(base, "_fields", {}))
        declared = {k: v for k, v in ns.items() if isinstance(v, (Field, FieldInfo)) and not k.startswith("__")}
        for fname, annotation in annotations.items():
            if fname not in declared and not fname.startswith("_") and not _is_classvar(annotation):
                raise SignatureTypeError(f"{where}: field {fname!r} must be declared with InputField() or "
                                         f"OutputField(), e.g. `{fname}: ... = InputField()`")
        local: Mapping[str, Any] | None = None
        if any(isinstance(annotations.get(f), str) for f in declared):
            frame = sys._getframe(1)
            local = dict(frame.f_locals) if frame is not None else None
            del frame
        for fname, value in declared.items():  # definition order; a field without a type is a str (as in DSPy)
            ns.pop(fname)
            _check_name(fname, where)
            f_where = f"{where}, field {fname!r}"
            field = value if isinstance(value, Field) else _from_field_info(value, f_where)
            if fname in annotations:
                annotation = annotations[fname]
                if isinstance(annotation, str):
                    annotation = _resolve_annotation(annotation, ns, f_where, local)
                field = replace(field, annotation=annotation, typed=True)
            elif field.annotation is str or field.annotation is None:
                field = replace(field, annotation=str, typed=False)
            _check_type(field.annotation, f_where)
            fields.pop(fname, None)
            fields[fname] = _bind(field, fname)
        if "__annotations__" in ns:
            ns["__annotations__"] = {k: v for k, v in annotations.items() if k not in declared}
        cls = super().__new__(mcs, name, bases, ns)
        if "_fields" not in ns:
            if fields and not any(f.kind == "output" for f in fields.values()):
                raise SignatureError(f"{where}: no output fields; declare at least one OutputField")
            cls._fields = _validated(fields, name)
        if "_instructions" not in ns:
            doc = inspect.cleandoc(ns.get("__doc__") or "")
            if not doc:  # a subclass without a docstring keeps its base's instructions (as in DSPy)
                doc = next((b._instructions for b in bases if getattr(b, "_instructions", None)), None)
            cls._instructions = doc or None
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        """``Signature("a -> b", "instructions")`` (or a mapping of fields) makes a signature class; calling a
        signature class with field values, ``QA(question=..., answer=...)``, makes an instance of it."""
        if cls is Signature or args:
            return _signature_from_call(cls, args, kwargs, sys._getframe(1))
        return super().__call__(**kwargs)

    # --- introspection -------------------------------------------------------------------------

    @property
    def input_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls._fields.items() if f.kind == "input"}

    @property
    def output_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls._fields.items() if f.kind == "output"}

    @property
    def fields(cls) -> dict[str, Field]:
        """Inputs, then outputs (name -> field)."""
        return dict(cls._fields)

    @property
    def model_fields(cls) -> dict[str, Field]:
        """The fields under pydantic's name (DSPy's signatures are pydantic models)."""
        return dict(cls._fields)

    @property
    def instructions(cls) -> str:
        if cls._instructions:
            return cls._instructions
        ins = ", ".join(f"`{n}`" for n in cls.input_fields)
        outs = ", ".join(f"`{n}`" for n in cls.output_fields)
        return f"Given the fields {ins}, produce the fields {outs}."

    @instructions.setter
    def instructions(cls, instructions: str) -> None:
        """DSPy allows ``sig.instructions = "..."``: it changes this signature class in place (prefer
        ``with_instructions``, which returns a new one)."""
        if instructions is not None and not isinstance(instructions, str):
            raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
        cls._instructions = instructions or None
        cls.__doc__ = instructions

    @property
    def custom_instructions(cls) -> str | None:
        """The instructions as given (docstring or argument), None when the default text is used."""
        return cls._instructions

    def signature_string(cls) -> str:
        side = lambda fs: ", ".join(f"{n}: {type_name(f.annotation)}" for n, f in fs.items())  # noqa: E731
        return f"{side(cls.input_fields)} -> {side(cls.output_fields)}"

    @property
    def signature(cls) -> str:
        """The string form, ``"question -> answer"`` (DSPy's ``Signature.signature``)."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    # --- edits return new signatures -------------------------------------------------------------

    def with_instructions(cls, instructions: str) -> "SignatureMeta":
        return make_signature(cls.fields, instructions, cls.__name__)

    def append_instructions(cls, instructions: str) -> "SignatureMeta":
        """A new signature whose instructions are these followed by a blank line and ``instructions``."""
        return cls.with_instructions(f"{cls.instructions}\n\n{instructions}")

    def with_updated_fields(cls, name: str, type_: Any = None, **kwargs: Any) -> "SignatureMeta":
        """A new signature with field ``name`` changed: ``desc``, ``prefix``, ``default``, its type (``type_``),
        or any other ``json_schema_extra`` entry (as in DSPy)."""
        if name not in cls._fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r} (fields: {', '.join(cls._fields)})")
        field = cls._fields[name]
        changes: dict[str, Any] = {}
        extra = dict(field.extra)
        user = dict(extra.get("json_schema_extra") or {})
        for key, value in kwargs.items():
            if key in ("desc", "prefix"):
                if not isinstance(value, str):
                    raise SignatureError(f"with_updated_fields: {key} must be a string, got {type(value).__name__}")
                changes[key] = value
            elif key == "default":
                changes["default"] = value
            elif key == "__dspy_field_type":
                changes["kind"] = FieldKind(value)
            elif key == IS_TYPE_UNDEFINED:
                changes["typed"] = not value
            elif key in ("format", "parser", "description", "default_factory") or key in PYDANTIC_CONSTRAINTS:
                extra[key] = value
            else:
                user[key] = value
        if user:
            extra["json_schema_extra"] = user
        if type_ is not None:
            changes.update(annotation=type_, typed=True)
        field = replace(field, extra=extra, **changes)
        return make_signature({**cls._fields, name: field}, cls._instructions, cls.__name__)

    def insert(cls, index: int, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` at position ``index`` among its inputs (an InputField) or its
        outputs (an OutputField); a negative index counts from the end, -1 appends."""
        if isinstance(field, FieldInfo):
            field = _from_field_info(field, f"{cls.__name__}.insert({name!r})")
        if not isinstance(field, Field):
            raise SignatureError(f"{name!r}: pass InputField(...) or OutputField(...), got {type(field).__name__}")
        if name in cls._fields:
            raise SignatureError(f"cannot add field {name!r}: the signature already has it")
        if type_ is not None:
            field = replace(field, annotation=type_, typed=True)
        elif field.annotation is None:
            field = replace(field, annotation=str)
        inputs, outputs = list(cls.input_fields.items()), list(cls.output_fields.items())
        side = inputs if field.kind == "input" else outputs
        if not isinstance(index, int):
            raise SignatureError(f"insert: the index must be an int, got {type(index).__name__}")
        at = index + len(side) + 1 if index < 0 else index
        if not 0 <= at <= len(side):
            raise SignatureError(f"cannot insert {name!r} at index {index}: the signature has {len(side)} "
                                 f"{field.kind.value} field(s), so the index must be in [{-len(side) - 1}, {len(side)}]")
        side.insert(at, (name, field))
        return make_signature(dict(inputs + outputs), cls._instructions, cls.__name__)

    def prepend(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` first among its inputs or outputs (as ChainOfThought does)."""
        return cls.insert(0, name, field, type_)

    def append(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` last among its inputs or outputs."""
        return cls.insert(-1, name, field, type_)

    def delete(cls, name: str) -> "SignatureMeta":
        """A new signature without field ``name`` (the same fields if it has none of that name, as in DSPy)."""
        return make_signature({n: f for n, f in cls._fields.items() if n != name}, cls._instructions, cls.__name__)

    def dump_state(cls) -> dict:
        """DSPy's saved form: ``{"instructions": ..., "fields": [{"prefix": ..., "description": ...}, ...]}``
        (fields in order, inputs first)."""
        return {"instructions": cls.instructions,
                "fields": [{"prefix": f.json_schema_extra["prefix"], "description": f.json_schema_extra["desc"]}
                           for f in cls._fields.values()]}

    def load_state(cls, state: Mapping[str, Any]) -> "SignatureMeta":
        """A new signature with the instructions and each field's prefix and description from ``state``
        (what :meth:`dump_state` wrote); this one is unchanged."""
        if not isinstance(state, Mapping):
            raise SignatureError(f"load_state takes the dict dump_state() returns, got {type(state).__name__}")
        instructions = state.get("instructions", cls._instructions)
        saved = state.get("fields", [])
        if not (instructions is None or isinstance(instructions, str)) or not isinstance(saved, (list, tuple)):
            raise SignatureError("a saved signature state needs 'instructions' (a string) and 'fields' (a list)")
        fields = dict(cls._fields)
        for (name, field), entry in zip(cls._fields.items(), saved):
            if not isinstance(entry, Mapping):
                raise SignatureError(f"saved state of field {name!r} must be a dict, got {type(entry).__name__}")
            prefix, desc = entry.get("prefix", field.prefix), entry.get("description", field.desc)
            if not isinstance(prefix, str) or not isinstance(desc, str):
                raise SignatureError(f"saved state of field {name!r}: prefix and description must be strings")
            if prefix == f"{infer_prefix(name)}:":  # DSPy's default: keep it implicit
                prefix = ""
            fields[name] = replace(field, prefix=prefix, desc=desc)
        return make_signature(fields, instructions, cls.__name__)

    # --- values ----------------------------------------------------------------------------------

    def _key(cls) -> tuple:
        def one(n: str, f: Field) -> tuple:
            extra = f.json_schema_extra
            return (n, f.kind.value, type_name(f.annotation), extra["desc"], extra["prefix"])
        return tuple(one(n, f) for n, f in cls._fields.items()), cls.instructions

    def equals(cls, other: Any) -> bool:
        """Same fields (names, kinds, types, descriptions, prefixes, other settings) and instructions."""
        return isinstance(other, SignatureMeta) and cls == other

    def __eq__(cls, other: object) -> bool:
        if cls is other:
            return True
        if not isinstance(other, SignatureMeta):
            return NotImplemented
        if cls._key() != other._key():
            return False
        return all(f.annotation == g.annotation and f.extra == g.extra and f.default == g.default
                   for f, g in zip(cls._fields.values(), other._fields.values()))

    def __hash__(cls) -> int:
        return hash(cls._key())

    def __repr__(cls) -> str:
        fields = "\n    ".join(f"{n} = Field({f})" for n, f in cls._fields.items())
        return f"{cls.__name__}({cls.signature}\n    instructions={cls.instructions!r}\n    {fields}\n)"


def _signature_from_call(cls: SignatureMeta, args: tuple, kwargs: dict, frame: Any) -> SignatureMeta:
    """``Signature(spec, instructions=None, signature_name=..., custom_types=...)`` (DSPy's arguments; ``name=``
    is dspex's spelling of ``signature_name``)."""
    params = ("signature", "instructions", "signature_name", "custom_types")
    if len(args) > len(params):
        raise SignatureError(f"Signature() takes at most {len(params)} positional arguments, got {len(args)}")
    bound = dict(zip(params, args))
    if "name" in kwargs:
        kwargs["signature_name"] = kwargs.pop("name")
    for key, value in kwargs.items():
        if key not in params:
            raise SignatureError(f"Signature() got an unknown argument {key!r} (it takes {', '.join(params)})")
        if key in bound:
            raise SignatureError(f"Signature() got {key!r} twice")
        bound[key] = value
    spec = bound.get("signature")
    instructions, custom_types = bound.get("instructions"), bound.get("custom_types")
    if isinstance(spec, SignatureMeta):
        return spec if instructions is None else spec.with_instructions(instructions)
    if not isinstance(spec, (str, Mapping)):
        raise SignatureError("Signature(...) takes a string like 'question -> answer' (or a mapping of "
                             f"name -> field); got {type(spec).__name__}")
    lookup = _frame_lookup(frame) if isinstance(spec, str) and custom_types is None else None
    return _make(spec, instructions, bound.get("signature_name") or "StringSignature", custom_types, lookup)


def _make(signature: Any, instructions: str | None, name: str, custom_types: Mapping[str, Any] | None,
          lookup: Callable[[str], Any] | None) -> SignatureMeta:
    if instructions is not None and not isinstance(instructions, str):
        raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
    if not isinstance(name, str) or not name.isidentifier():
        raise SignatureError(f"a signature's name must be an identifier, got {name!r}")
    if isinstance(signature, str):
        fields = parse_signature_string(signature, custom_types, lookup)
    elif isinstance(signature, SignatureMeta):
        fields = signature.fields
    elif isinstance(signature, Mapping):
        fields = {n: _as_field(n, v, name) for n, v in signature.items()}
    else:
        raise SignatureError(f"make_signature takes a string like 'question -> answer' or a mapping of name -> "
                             f"field; got {type(signature).__name__}")
    ns = {"_fields": _validated(dict(fields), name), "_instructions": instructions or None,
          "__module__": __name__, "__doc__": instructions}
    return type.__new__(SignatureMeta, name, (Signature,), ns)


def make_signature(signature: Any, instructions: str | None = None, signature_name: str = "StringSignature",
                   custom_types: Mapping[str, Any] | None = None) -> SignatureMeta:
    """A signature class from a string (``"question, context -> answer"``) or an ordered mapping of
    name -> ``InputField()``/``OutputField()`` (or DSPy's ``(type, field)`` pairs). A string's custom type
    names come from ``custom_types``, or when that is not given from the caller's scope."""
    lookup = _frame_lookup(sys._getframe(1)) if isinstance(signature, str) and custom_types is None else None
    return _make(signature, instructions, signature_name, custom_types, lookup)


class Signature(metaclass=SignatureMeta):
    """Base of all signatures. Subclass it (docstring = instructions) or call it with a string.

    Calling a signature class with values (``QA(question="...", answer="...")``) makes an instance holding
    them, each checked against its field's type (DSPy's signatures are pydantic models)."""

    _fields = {}  # type: dict[str, Field]
    _instructions = None  # type: str | None

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        unknown = [n for n in values if n not in cls._fields]
        if unknown:
            raise SignatureError(f"{cls.__name__} has no field(s) {', '.join(unknown)} "
                                 f"(fields: {', '.join(cls._fields)})")
        missing = [n for n, f in cls._fields.items() if n not in values and f.is_required()]
        if missing:
            raise SignatureError(f"{cls.__name__}(...) is missing field(s) {', '.join(missing)}")
        for name, field in cls._fields.items():
            if name not in values:
                value = field.get_default(call_default_factory=True)
            else:
                try:
                    value = pydantic.TypeAdapter(field.annotation).validate_python(values[name])
                except pydantic.ValidationError as exc:
                    raise SignatureError(f"{cls.__name__}: field {name!r}: {values[name]!r} is not a valid "
                                         f"{type_name(field.annotation)} ({exc.errors()[0]['msg']})") from None
            object.__setattr__(self, name, value)

    def model_dump(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in type(self)._fields}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.model_dump() == other.model_dump()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.model_dump().items())})"


def _reduce_signature(cls: SignatureMeta) -> Any:
    if cls is Signature:
        return "Signature"
    return (make_signature, (cls.fields, cls._instructions, cls.__name__))


copyreg.pickle(SignatureMeta, _reduce_signature)


def ensure_signature(signature: Any, instructions: str | None = None) -> SignatureMeta:
    """A signature class from a signature class or a string (what programs take); ``instructions`` only
    with a string (as in DSPy)."""
    if isinstance(signature, SignatureMeta):
        if instructions is not None:
            raise SignatureError("don't pass instructions with a signature class: use "
                                 "signature.with_instructions(...)")
        return signature
    if signature is None:
        raise SignatureError("a signature is required: pass a string like 'question -> answer' or a "
                             "Signature class")
    return _signature_from_call(Signature, (signature, instructions), {}, sys._getframe(1))
