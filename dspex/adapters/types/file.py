"""``dspex.File``: a document (PDF, text, ...) as a signature field, shown to the LM as one ``file``
content part (OpenAI's chat format: ``{"type": "file", "file": {"file_data" | "file_id", "filename"}}``).

A File holds inline ``file_data`` (a ``data:<mime>;base64,...`` URI), or a provider's ``file_id`` of an
uploaded file, and optionally a ``filename``. It is built from values in memory only; ``File.from_path``
reads a local file when called.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import Any

import pydantic

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring

_KEYS = ("file_data", "file_id", "filename")


class File(Type):
    """A file input: ``File(raw_bytes)``, ``File("data:application/pdf;base64,...")``,
    ``File(file_id="file-abc")``, ``File.from_path(path)``, ``File.from_bytes(b, filename, mime_type)``,
    ``File.from_file_id(file_id)``."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    model_config = pydantic.ConfigDict(frozen=True, str_strip_whitespace=True, validate_assignment=True,
                                       extra="forbid", json_schema_extra=schema_without_docstring)

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"File expected at most 1 positional argument, received {len(args)}")
        if args:
            fields = encode_file_to_dict(args[0])
            both = sorted(set(fields) & set(data))
            if both:
                raise TypeError(f"File received {', '.join(both)} from both the positional source and keyword "
                                "arguments")
            data = {**fields, **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, values: Any) -> Any:
        return encode_file_to_dict(values)

    def format(self) -> list[dict[str, Any]]:
        part = {key: getattr(self, key) for key in _KEYS if getattr(self, key)}
        return [{"type": "file", "file": part}]

    @classmethod
    def from_path(cls, file_path: str | os.PathLike, filename: str | None = None,
                  mime_type: str | None = None) -> "File":
        """Read a local file: ``filename`` defaults to its base name, ``mime_type`` to the one its extension
        implies (``application/octet-stream`` when none)."""
        path = os.fspath(file_path)
        if not os.path.isfile(path):
            raise ExampleError(f"File not found: {path}")
        with open(path, "rb") as fh:
            payload = fh.read()
        mime = mime_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
        name = os.path.basename(path) if filename is None else filename
        return cls(file_data=_data_uri(mime, payload), filename=name)

    @classmethod
    def from_bytes(cls, file_bytes: bytes, filename: str | None = None,
                   mime_type: str = "application/octet-stream") -> "File":
        """Inline ``file_bytes`` as a data URI of ``mime_type``."""
        if not isinstance(file_bytes, (bytes, bytearray, memoryview)):
            raise ExampleError(f"File.from_bytes expects bytes, got {type(file_bytes).__name__}")
        return cls(file_data=_data_uri(mime_type, bytes(file_bytes)), filename=filename)

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> "File":
        """A file already uploaded to the provider, by its id."""
        return cls(file_id=file_id, filename=filename)

    def __str__(self) -> str:
        return self.serialize_model()

    def __repr__(self) -> str:
        shown = []
        if self.file_data is not None:
            if self.file_data.startswith("data:"):
                mime = self.file_data[len("data:"):].split(";")[0].split(",")[0]
                payload = self.file_data.partition("base64,")[2] if "base64," in self.file_data else self.file_data
                shown.append(f"file_data=<DATA_URI({mime}, {len(payload)} chars)>")
            else:
                shown.append(f"file_data=<DATA({len(self.file_data)} chars)>")
        if self.file_id is not None:
            shown.append(f"file_id='{self.file_id}'")
        if self.filename is not None:
            shown.append(f"filename='{self.filename}'")
        return f"File({', '.join(shown)})"


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def encode_file_to_dict(file_input: Any) -> dict:
    """The File fields for an in-memory value: raw bytes (as an ``application/octet-stream`` data URI), a
    data URI string, a dict with at least one of ``file_data``/``file_id``/``filename``, or a File. Any
    other string (a path, a URL) raises ExampleError: read files with ``File.from_path``."""
    if isinstance(file_input, File):
        return {key: getattr(file_input, key) for key in _KEYS if getattr(file_input, key) is not None}
    if isinstance(file_input, dict):
        if any(key in file_input for key in _KEYS):
            return file_input
        raise ExampleError("Value of `dspex.File` must contain at least one of: file_data, file_id, or filename "
                           f"(got keys {sorted(map(str, file_input))})")
    if isinstance(file_input, str):
        if file_input.startswith("data:"):
            return {"file_data": file_input}
        shown = file_input if len(file_input) <= 100 else file_input[:100] + "..."
        raise ExampleError(f"String file inputs must be data URIs, received: {shown!r}. Load local files with "
                           "File.from_path().")
    if isinstance(file_input, (bytes, bytearray, memoryview)):
        return {"file_data": _data_uri("application/octet-stream", bytes(file_input))}
    raise ExampleError(f"Unsupported file input type: {type(file_input).__name__} (pass bytes, a data URI, or use "
                       "File.from_path / File.from_file_id)")
