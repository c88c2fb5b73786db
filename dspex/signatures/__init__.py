"""DSPy's ``dspy.signatures`` import path: signatures and their fields (the code lives in :mod:`dspex.signature`)."""

from .field import InputField, OldField, OldInputField, OldOutputField, OutputField
from .signature import Signature, SignatureMeta, ensure_signature, infer_prefix, make_signature

__all__ = ["InputField", "OutputField", "OldField", "OldInputField", "OldOutputField", "SignatureMeta", "Signature",
           "infer_prefix", "ensure_signature", "make_signature"]
