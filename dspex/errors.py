"""The one error tree of ``dspex``.

::

    DspexError
    ├── SignatureError        a signature string/class is malformed (says what and where)
    ├── ExampleError          a data row is malformed (says which row/line and why)
    └── AdapterParseError     an LM answer could not be parsed into the signature's output fields
"""

from __future__ import annotations

from typing import Any, Sequence


class DspexError(Exception):
    """Base of every error raised on purpose by dspex."""


class SignatureError(DspexError, ValueError):
    """A malformed signature; the message names the problem, the place and the fix."""


class ExampleError(DspexError, ValueError):
    """A malformed example or data row (with its line number when loaded from a file)."""


class AdapterParseError(DspexError):
    """The LM's text did not contain the signature's output fields in a parseable form."""

    def __init__(self, signature: Any, raw_text: str, missing_fields: Sequence[str] = (), reason: str = "") -> None:
        self.signature = signature
        self.raw_text = raw_text
        self.missing_fields = tuple(missing_fields)
        self.reason = reason
        excerpt = raw_text if len(raw_text) <= 300 else raw_text[:300] + "..."
        parts = [f"could not parse the LM answer for {getattr(signature, '__name__', signature)}"]
        if self.missing_fields:
            parts.append(f"missing fields: {', '.join(self.missing_fields)}")
        if reason:
            parts.append(reason)
        super().__init__("; ".join(parts) + f"\n--- raw text ---\n{excerpt}")

    def __reduce__(self):
        return (type(self), (self.signature, self.raw_text, self.missing_fields, self.reason))
