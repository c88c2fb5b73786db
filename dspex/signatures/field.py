"""DSPy's ``dspy.signatures.field`` import path: ``InputField``/``OutputField`` (from :mod:`dspex.signature`)
and DSPy's legacy ``OldField`` classes, kept for code that still imports them."""

from __future__ import annotations

from typing import Any

from ..signature import DSPY_FIELD_ARG_NAMES, PYDANTIC_CONSTRAINTS, Field, InputField, OutputField

PYDANTIC_CONSTRAINT_MAP = dict(PYDANTIC_CONSTRAINTS)


class OldField:
    """DSPy's legacy field: a ``prefix`` and ``desc`` filled in from the field's name by :meth:`finalize`."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, input: bool, format: Any = None) -> None:
        self.prefix = prefix
        self.desc = desc
        self.format = format

    def finalize(self, key: str, inferred_prefix: str) -> None:
        """Fill in what was not given: the prefix ``"<inferred>:"`` and the description ``"${key}"``."""
        if self.prefix is None:
            self.prefix = f"{inferred_prefix}:"
        if self.desc is None:
            self.desc = f"${{{key}}}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix}, desc={self.desc})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OldField) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


class OldInputField(OldField):
    """DSPy's legacy input field declaration (prefix, desc, format)."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, format: Any = None) -> None:
        super().__init__(prefix=prefix, desc=desc, input=True, format=format)


class OldOutputField(OldField):
    """DSPy's legacy output field declaration (prefix, desc, format)."""

    def __init__(self, *, prefix: str | None = None, desc: str | None = None, format: Any = None) -> None:
        super().__init__(prefix=prefix, desc=desc, input=False, format=format)


def new_to_old_field(field: Field) -> OldField:
    """A signature's field as DSPy's legacy ``OldInputField``/``OldOutputField``."""
    extra = field.json_schema_extra
    cls = OldInputField if extra["__dspy_field_type"] == "input" else OldOutputField
    return cls(prefix=extra.get("prefix"), desc=extra.get("desc"), format=extra.get("format"))


__all__ = ["InputField", "OutputField", "OldField", "OldInputField", "OldOutputField", "new_to_old_field",
           "DSPY_FIELD_ARG_NAMES", "PYDANTIC_CONSTRAINT_MAP"]
