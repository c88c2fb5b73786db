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

``fields`` (Field, InputField, OutputField, infer_prefix), ``parsing`` (string signatures) and ``meta``
(the Signature class and its edits) hold the code.
"""

from .fields import (DSPY_FIELD_ARG_NAMES, IS_TYPE_UNDEFINED, NO_DEFAULT, PYDANTIC_CONSTRAINTS, RESERVED, Field,
                     FieldKind, InputField, OutputField, SignatureTypeError, custom_types_of, infer_prefix, type_name)
from .meta import Signature, SignatureMeta, ensure_signature, make_signature
from .parsing import parse_signature_string

__all__ = ["Signature", "SignatureMeta", "ensure_signature", "make_signature", "Field", "FieldKind", "InputField",
           "OutputField", "SignatureTypeError", "infer_prefix", "type_name", "custom_types_of", "parse_signature_string",
           "NO_DEFAULT", "RESERVED", "IS_TYPE_UNDEFINED", "DSPY_FIELD_ARG_NAMES", "PYDANTIC_CONSTRAINTS"]
