"""``Document`` (experimental): a text a citation-capable LM may quote from, shown to it as one ``document``
content part (Anthropic's citations format, via the provider's chat API)."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring



class Document(Type):
    """A source document: its ``data`` (the text), an optional ``title`` (cited back), its ``media_type``
    (``text/plain`` or ``application/pdf``) and optional ``context`` about it. ``Document("text")`` works.

    Experimental: this class may change or be removed in a future release without warning."""

    data: str

    model_config = pydantic.ConfigDict(json_schema_extra=schema_without_docstring)
    title: str | None = None
    media_type: Literal["text/plain", "application/pdf"] = "text/plain"
    context: str | None = None

    def format(self) -> list[dict[str, Any]]:
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "text", "media_type": self.media_type, "data": self.data},
            "citations": {"enabled": True},
        }
        if self.title:
            block["title"] = self.title
        if self.context:
            block["context"] = self.context
        return [block]

    @classmethod
    def description(cls) -> str:
        return ("A document containing text content that can be referenced and cited. Include the full text content "
                "and optionally a title for proper referencing.")

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, (cls, dict)):
            return data
        if isinstance(data, str):
            return {"data": data}
        raise ExampleError(f"Received invalid value for `Document`: {data!r} (pass the text, or a dict with 'data')")

    def __str__(self) -> str:
        title = f"'{self.title}': " if self.title else ""
        return f"Document({title}{len(self.data)} chars)"
