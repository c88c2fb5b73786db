"""Signatures: the typed input -> output contract of an LM call.

``Signature("question, context -> answer")`` and ``class Classify(Signature)`` both make a new
signature *class* (as in DSPy). Signatures are values: edits (``with_instructions``, ``prepend``,
``append``) return new signatures; equality and hashing are structural; they pickle by value.
"""

from __future__ import annotations

import ast
import copyreg
import enum
import keyword
import typing
from dataclasses import dataclass, replace
import types
from typing import Any, Literal, Mapping, Optional, Union

import pydantic

from .errors import SignatureError

RESERVED = frozenset({"usage", "cost", "raw", "trace", "completions", "completed"})
"""Field names that really clash: a Prediction's own attributes (and constructor keywords) and the Chat
adapter's end marker. Others (``items``, ``inputs``...) are fine: read them as ``pred["items"]`` where a
method of the same name shadows the attribute."""
_BASE_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                               "Optional": Optional, "Literal": Literal, "Any": Any, "tuple": tuple, "Union": Union,
                               "List": list, "Dict": dict, "None": type(None), "NoneType": type(None)}
MAX_TYPE_DEPTH = 20  # nested type arguments a signature string may have (list[list[...]])
MAX_TYPE_TEXT = 1000


class FieldKind(str, enum.Enum):
    """An input or an output (a ``str`` too, so saved programs keep their plain strings)."""

    INPUT = "input"
    OUTPUT = "output"


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()


@dataclass(frozen=True)
class Field:
    """One field: whether it is an input or output, its type, description, display prefix and default
    (an input with a default, or an ``Optional`` one, may be omitted; such an output the model leaves out
    takes its default, or None)."""

    kind: FieldKind
    annotation: Any = str
    desc: str = ""
    prefix: str = ""
    default: Any = NO_DEFAULT

    @property
    def optional(self) -> bool:
        if self.default is not NO_DEFAULT:
            return True
        args = typing.get_args(self.annotation)
        return typing.get_origin(self.annotation) in (typing.Union, types.UnionType) and type(None) in args

    def missing_value(self) -> Any:
        return None if self.default is NO_DEFAULT else self.default

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FieldKind):
            try:
                object.__setattr__(self, "kind", FieldKind(self.kind))
            except ValueError:
                raise SignatureError(f"a field's kind is {self.kind!r}; use 'input' or 'output'") from None

    def display(self, name: str) -> str:
        return self.prefix or name.replace("_", " ").title()


def InputField(desc: str = "", prefix: str = "", default: Any = NO_DEFAULT) -> Field:  # noqa: N802 - DSPy's
    """Declare an input field in a signature class body."""
    return Field(FieldKind.INPUT, str, desc, prefix, default)


def OutputField(desc: str = "", prefix: str = "", default: Any = NO_DEFAULT) -> Field:  # noqa: N802
    """Declare an output field in a signature class body."""
    return Field(FieldKind.OUTPUT, str, desc, prefix, default)


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
    if origin in (list, dict, tuple):
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


def _check_name(name: str, where: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(f"{where}: {name!r} is not a valid field name (use a Python identifier like 'question')")
    if name in RESERVED or name.startswith("_"):
        raise SignatureError(f"{where}: field name {name!r} is reserved (it clashes with Prediction/Example "
                             f"attributes); rename it")


def _check_type(annotation: Any, where: str) -> None:
    try:
        pydantic.TypeAdapter(annotation)
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise SignatureError(f"{where}: unsupported type {annotation!r}: {exc}") from None


class _TypeParser:
    """Turns ``list[str]``-style text into typing objects from an allow-list (no eval)."""

    def __init__(self, custom: Mapping[str, Any]) -> None:
        self.names = {**_BASE_TYPES, **custom}

    def parse(self, text: str, where: str) -> Any:
        if len(text) > MAX_TYPE_TEXT:
            raise SignatureError(f"{where}: the type is {len(text)} characters long (at most {MAX_TYPE_TEXT})")
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            raise SignatureError(f"{where}: cannot parse type {text.strip()[:100]!r}") from None
        return self.build(node, where)

    def build(self, node: ast.AST, where: str, depth: int = 0) -> Any:
        if depth > MAX_TYPE_DEPTH:
            raise SignatureError(f"{where}: the type nests more than {MAX_TYPE_DEPTH} levels deep")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
            return Union[self.build(node.left, where, depth + 1), self.build(node.right, where, depth + 1)]
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                allowed = ", ".join(sorted(n for n in self.names if n not in ("List", "Dict")))
                raise SignatureError(f"{where}: unknown type {node.id!r} (allowed: {allowed}; pass other types "
                                     f"with custom_types={{'{node.id}': {node.id}}})")
            return self.names[node.id]
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
            if base not in (list, dict, tuple, Optional, Union):
                raise SignatureError(f"{where}: {ast.unparse(node.value)!r} takes no type arguments")
            args = tuple(Ellipsis if isinstance(i, ast.Constant) and i.value is Ellipsis and base is tuple
                         else self.build(i, where, depth + 1) for i in items)
            try:
                return base[args if len(args) > 1 else args[0]]
            except (TypeError, ValueError) as exc:
                raise SignatureError(f"{where}: bad type arguments: {exc}") from None
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


def parse_signature_string(spec: str, custom_types: Mapping[str, Any] | None = None) -> dict[str, Field]:
    """``"a, b: int -> c: list[str]"`` to an ordered ``{name: Field}``; SignatureError says what is wrong."""
    if not isinstance(spec, str):
        raise SignatureError(f"a signature string is expected, got {type(spec).__name__}")
    if spec.count("->") != 1:
        problem = "missing '->'" if "->" not in spec else "more than one '->'"
        raise SignatureError(f"signature {spec!r}: {problem}; write it like 'question, context -> answer'")
    parser = _TypeParser(custom_types or {})
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
                other = fields[name].kind
                why = "is used as both input and output" if other != kind else "appears twice"
                raise SignatureError(f"signature {spec!r}: field {name!r} {why}")
            fields[name] = Field(kind, annotation)
    return fields


class SignatureMeta(type):
    """Makes signature classes: from a class body, or from ``Signature("a -> b")``."""

    def __new__(mcs, name: str, bases: tuple, ns: dict, **kwargs: Any) -> "SignatureMeta":
        annotations = ns.get("__annotations__", {})
        fields: dict[str, Field] = {}
        for base in reversed(bases):
            fields.update(getattr(base, "_fields", {}))
        for fname in annotations:
            if not isinstance(ns.get(fname), Field):
                raise SignatureError(f"signature class {name}: field {fname!r} must be declared with "
                                     f"InputField() or OutputField()")
        for fname, value in list(ns.items()):  # definition order; a field without a type is a str (as in DSPy)
            if not isinstance(value, Field):
                continue
            ns.pop(fname)
            _check_name(fname, f"signature class {name}")
            annotation = annotations.get(fname, str)
            if isinstance(annotation, str):
                annotation = _resolve_annotation(annotation, ns, f"signature class {name}, field {fname!r}")
            _check_type(annotation, f"signature class {name}, field {fname!r}")
            fields[fname] = replace(value, annotation=annotation)
        ns.pop("__annotations__", None)
        cls = super().__new__(mcs, name, bases, ns)
        if "_fields" not in ns:
            cls._fields = _validated(fields, name)
        if "_instructions" not in ns:
            doc = (ns.get("__doc__") or "").strip()
            cls._instructions = doc or None
        return cls

    def __call__(cls, spec: Any = None, instructions: str | None = None, *,
                 custom_types: Mapping[str, Any] | None = None, name: str = "StringSignature") -> "SignatureMeta":
        if isinstance(spec, str):
            return make_signature(parse_signature_string(spec, custom_types), instructions, name)
        if isinstance(spec, SignatureMeta):
            return spec if instructions is None else spec.with_instructions(instructions)
        if isinstance(spec, Mapping):
            return make_signature(dict(spec), instructions, name)
        raise SignatureError("Signature(...) takes a string like 'question -> answer' (or a mapping of "
                             f"name -> Field); got {type(spec).__name__}")

    # --- introspection -------------------------------------------------------------------------

    @property
    def input_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls._fields.items() if f.kind == "input"}

    @property
    def output_fields(cls) -> dict[str, Field]:
        return {n: f for n, f in cls._fields.items() if f.kind == "output"}

    @property
    def fields(cls) -> dict[str, Field]:
        return dict(cls._fields)

    @property
    def instructions(cls) -> str:
        if cls._instructions:
            return cls._instructions
        ins = ", ".join(f"`{n}`" for n in cls.input_fields)
        outs = ", ".join(f"`{n}`" for n in cls.output_fields)
        return f"Given the fields {ins}, produce the fields {outs}."

    @property
    def custom_instructions(cls) -> str | None:
        """The instructions as given (docstring or argument), None when the default text is used."""
        return cls._instructions

    def signature_string(cls) -> str:
        side = lambda fs: ", ".join(f"{n}: {type_name(f.annotation)}" for n, f in fs.items())  # noqa: E731
        return f"{side(cls.input_fields)} -> {side(cls.output_fields)}"

    # --- edits return new signatures -------------------------------------------------------------

    def with_instructions(cls, instructions: str) -> "SignatureMeta":
        return make_signature(cls.fields, instructions, cls.__name__)

    def append_instructions(cls, text: str) -> "SignatureMeta":
        """A new signature whose instructions end with ``text`` (DSPy's name)."""
        return cls.with_instructions(f"{cls.instructions}\n{text}")

    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> "SignatureMeta":
        """A new signature with field ``name`` changed (``desc``, ``prefix``, ``default``, or its type)."""
        if name not in cls._fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r} (fields: {', '.join(cls._fields)})")
        bad = set(changes) - {"desc", "prefix", "default"}
        if bad:
            raise SignatureError(f"with_updated_fields changes desc, prefix, default or type_; not {sorted(bad)}")
        field = replace(cls._fields[name], **changes, **({"annotation": type_} if type_ is not None else {}))
        return make_signature({**cls._fields, name: field}, cls._instructions, cls.__name__)

    def equals(cls, other: Any) -> bool:
        """Same fields (names, kinds, types, descriptions) and instructions."""
        return isinstance(other, SignatureMeta) and cls._key() == other._key()

    @property
    def signature(cls) -> str:
        """The string form, ``"question -> answer"`` (DSPy's ``Signature.signature``)."""
        side = lambda fs: ", ".join(fs)  # noqa: E731
        return f"{side(cls.input_fields)} -> {side(cls.output_fields)}"

    def _insert(cls, name: str, field: Field, type_: Any, at_start: bool) -> "SignatureMeta":
        if not isinstance(field, Field):
            raise SignatureError(f"{name!r}: pass InputField(...) or OutputField(...), got {type(field).__name__}")
        field = replace(field, annotation=type_ if type_ is not None else field.annotation)
        items = list(cls._fields.items())
        same = [i for i, (_, f) in enumerate(items) if f.kind == field.kind]
        if not same:
            pos = len(items) if field.kind == "output" else 0
        else:
            pos = same[0] if at_start else same[-1] + 1
        items.insert(pos, (name, field))
        if name in cls._fields:
            raise SignatureError(f"cannot add field {name!r}: the signature already has it")
        return make_signature(dict(items), cls._instructions, cls.__name__)

    def prepend(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` first among its inputs or outputs (as ChainOfThought does)."""
        return cls._insert(name, field, type_, at_start=True)

    def append(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` last among its inputs or outputs."""
        return cls._insert(name, field, type_, at_start=False)

    # --- values ----------------------------------------------------------------------------------

    def _key(cls) -> tuple:
        return (tuple((n, f.kind, type_name(f.annotation), f.desc, f.prefix) for n, f in cls._fields.items()),
                cls._instructions or "")

    def __eq__(cls, other: object) -> bool:
        if not isinstance(other, SignatureMeta):
            return NotImplemented
        return cls._key() == other._key()

    def __hash__(cls) -> int:
        return hash(cls._key())

    def __repr__(cls) -> str:
        return f"{cls.__name__}({cls.signature_string()!r}, instructions={cls.instructions!r})"


def _resolve_annotation(text: str, ns: dict, where: str) -> Any:
    """String annotations (``from __future__ import annotations``) resolve in the defining module."""
    import sys

    module = sys.modules.get(ns.get("__module__", ""))
    scope = {**_BASE_TYPES, **(vars(module) if module else {}), **ns}
    try:
        return eval(text, scope)  # noqa: S307 - as typing.get_type_hints does for the user's own module
    except Exception as exc:  # noqa: BLE001 - any failure is a bad annotation
        raise SignatureError(f"{where}: cannot resolve type {text!r}: {exc}") from None


def _validated(fields: dict[str, Field], where: str) -> dict[str, Field]:
    if fields and not any(f.kind == "input" for f in fields.values()):
        raise SignatureError(f"{where}: no input fields; declare at least one InputField")
    if fields and not any(f.kind == "output" for f in fields.values()):
        raise SignatureError(f"{where}: no output fields; declare at least one OutputField")
    for name, field in fields.items():
        if field.kind not in ("input", "output"):
            raise SignatureError(f"{where}: field {name!r} has kind {field.kind!r}; use 'input' or 'output'")
        _check_name(name, where)
        _check_type(field.annotation, f"{where}, field {name!r}")
    return fields


def make_signature(fields: Mapping[str, Field], instructions: str | None = None,
                   name: str = "StringSignature") -> SignatureMeta:
    """Build a signature class from ordered fields (what the string form and edits use)."""
    ns = {"_fields": _validated(dict(fields), name), "_instructions": instructions or None,
          "__module__": __name__, "__doc__": instructions}
    return type.__new__(SignatureMeta, name, (Signature,), ns)


class Signature(metaclass=SignatureMeta):
    """Base of all signatures. Subclass it (docstring = instructions) or call it with a string."""

    _fields = {}  # type: dict[str, Field]
    _instructions = None  # type: str | None


def _reduce_signature(cls: SignatureMeta) -> Any:
    if cls is Signature:
        return "Signature"
    return (make_signature, (cls.fields, cls._instructions, cls.__name__))


copyreg.pickle(SignatureMeta, _reduce_signature)


def ensure_signature(spec: Any) -> SignatureMeta:
    """Accept a signature class or a string (what programs take)."""
    if isinstance(spec, SignatureMeta):
        return spec
    return Signature(spec)
