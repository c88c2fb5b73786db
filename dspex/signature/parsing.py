"""String signatures: ``"question, context: list[str] -> answer: int"`` parsed, type names found among the
built-in ones, ``custom_types=`` or the caller's scope (never imported by name)."""

from __future__ import annotations

import ast
from typing import Any, Callable, Literal, Mapping, Union


from ..errors import SignatureError
from .fields import Field, FieldKind, MAX_FRAMES, MAX_TYPE_DEPTH, MAX_TYPE_TEXT, _BASE_TYPES, _check_name, type_name


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
