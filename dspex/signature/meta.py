"""``Signature``: the class-making metaclass, its edits and DSPy's reading API; ``make_signature`` and
``ensure_signature``."""

from __future__ import annotations

import copyreg
import inspect
import re
import sys
import typing
from dataclasses import replace
from typing import Any, Callable, ClassVar, Mapping

import pydantic
from pydantic.fields import FieldInfo

from ..errors import SignatureError
from .fields import Field, FieldKind, IS_TYPE_UNDEFINED, InputField, NO_DEFAULT, OutputField, PYDANTIC_CONSTRAINTS, SignatureTypeError, _BASE_TYPES, _bind, _check_name, _check_type, _from_field_info, infer_prefix, type_name
from .parsing import _frame_lookup, parse_signature_string


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
        return dict(cls._of_kind("input"))

    @property
    def output_fields(cls) -> dict[str, Field]:
        return dict(cls._of_kind("output"))

    def _of_kind(cls, kind: str) -> dict[str, Field]:
        """The fields of one kind, worked out once per signature (its fields are set when it is made; an
        adapter reads them many times a call). Callers get copies."""
        cached = cls.__dict__.get(f"_{kind}_fields")
        if cached is None or cached[0] is not cls._fields:
            cached = (cls._fields, {n: f for n, f in cls._fields.items() if f.kind == kind})
            type.__setattr__(cls, f"_{kind}_fields", cached)
        return cached[1]

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
        """``"question: str -> answer: str"``, worked out once per set of fields (every call names its
        predictor by it)."""
        cached = cls.__dict__.get("_signature_string")
        if cached is None or cached[0] is not cls._fields:
            side = lambda kind: ", ".join(f"{n}: {type_name(f.annotation)}"  # noqa: E731
                                          for n, f in cls._of_kind(kind).items())
            cached = (cls._fields, f"{side('input')} -> {side('output')}")
            type.__setattr__(cls, "_signature_string", cached)
        return cached[1]

    @property
    def signature(cls) -> str:
        """The string form, ``"question -> answer"`` (DSPy's ``Signature.signature``)."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    # --- edits return new signatures -------------------------------------------------------------
    # (an edit keeps the instructions text in force, the default one included, as DSPy freezes it at creation)

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
        return make_signature({**cls._fields, name: field}, cls.instructions, cls.__name__)

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
        return make_signature(dict(inputs + outputs), cls.instructions, cls.__name__)

    def prepend(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` first among its inputs or outputs (as ChainOfThought does)."""
        return cls.insert(0, name, field, type_)

    def append(cls, name: str, field: Field, type_: Any = None) -> "SignatureMeta":
        """A new signature with ``field`` last among its inputs or outputs."""
        return cls.insert(-1, name, field, type_)

    def delete(cls, name: str) -> "SignatureMeta":
        """A new signature without field ``name`` (the same fields if it has none of that name, as in DSPy)."""
        return make_signature({n: f for n, f in cls._fields.items() if n != name}, cls.instructions, cls.__name__)

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
