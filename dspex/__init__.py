"""dspex: declarative language-model programs on OTP-style supervision (see README)."""

from .adapters import Adapter, ChatAdapter, JSONAdapter, TextAdapter
from .errors import AdapterParseError, DspexError, ExampleError, SignatureError
from .primitives import Example, Prediction, Usage, examples_from, load_jsonl
from .signature import Field, InputField, OutputField, Signature

__all__ = ["Signature", "InputField", "OutputField", "Field", "Example", "Prediction", "Usage", "load_jsonl",
           "examples_from", "Adapter", "ChatAdapter", "JSONAdapter", "TextAdapter", "DspexError", "SignatureError",
           "ExampleError", "AdapterParseError"]
