"""DSPy's ``dspy.signatures.utils`` import path."""

from __future__ import annotations

from typing import Any, Literal

from ..errors import SignatureError


def get_dspy_field_type(field: Any) -> Literal["input", "output"]:
    """``"input"`` or ``"output"``: the kind of a signature's field (``json_schema_extra["__dspy_field_type"]``)."""
    extra = getattr(field, "json_schema_extra", None) or {}
    kind = extra.get("__dspy_field_type") if isinstance(extra, dict) else None
    if kind not in ("input", "output"):
        raise SignatureError(f"{field!r} is not a signature field (no '__dspy_field_type'); declare it with "
                             "InputField() or OutputField()")
    return kind


__all__ = ["get_dspy_field_type"]
