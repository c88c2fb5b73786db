"""DSPy's ``dspy.signatures.signature`` import path (the code lives in :mod:`dspex.signature`)."""

from ..signature import (
    IS_TYPE_UNDEFINED,
    Field,
    FieldKind,
    InputField,
    OutputField,
    Signature,
    SignatureMeta,
    SignatureTypeError,
    ensure_signature,
    infer_prefix,
    make_signature,
)

__all__ = ["Signature", "SignatureMeta", "ensure_signature", "make_signature", "infer_prefix", "InputField",
           "OutputField", "Field", "FieldKind", "SignatureTypeError", "IS_TYPE_UNDEFINED"]
