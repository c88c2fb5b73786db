"""``Citations`` (experimental): the passages an LM quoted from the ``Document`` inputs, as an output field.

With a model that cites natively (Anthropic's citations API), the adapter drops the field from the prompt
(:meth:`Citations.adapt_to_native_lm_feature`) and fills it from the provider's citation data
(:meth:`Citations.parse_lm_response`, :meth:`Citations.parse_stream_chunk`).
"""

from __future__ import annotations

from typing import Any, Optional

import pydantic

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring


class Citations(Type):
    """A list of :class:`Citations.Citation`; iterable, sized and indexable like that list.

    Experimental: this class may change or be removed in a future release without warning."""

    class Citation(Type):
        """One quoted passage: ``cited_text``, the ``document_index`` (and ``document_title``) it is from, its
        character span ``[start_char_index, end_char_index)``, and the ``supported_text`` of the answer it
        backs."""

        model_config = pydantic.ConfigDict(json_schema_extra=schema_without_docstring)

        type: str = "char_location"
        cited_text: str
        document_index: int
        document_title: str | None = None
        start_char_index: int
        end_char_index: int
        supported_text: str | None = None

        def format(self) -> dict[str, Any]:
            shown: dict[str, Any] = {
                "type": self.type,
                "cited_text": self.cited_text,
                "document_index": self.document_index,
                "start_char_index": self.start_char_index,
                "end_char_index": self.end_char_index,
            }
            if self.document_title:
                shown["document_title"] = self.document_title
            if self.supported_text:
                shown["supported_text"] = self.supported_text
            return shown

    citations: list[Citation]

    model_config = pydantic.ConfigDict(json_schema_extra=schema_without_docstring)

    @classmethod
    def from_dict_list(cls, citations_dicts: list[dict[str, Any]]) -> "Citations":
        """Citations from dicts with ``cited_text``, ``document_index``, ``start_char_index``, ``end_char_index``
        (and optionally ``document_title``, ``supported_text``, ``type``)."""
        return cls(citations=[cls.Citation(**item) for item in citations_dicts])

    @classmethod
    def description(cls) -> str:
        return ("Citations with quoted text and source references. Include the exact text being cited and "
                "information about its source.")

    def format(self) -> list[dict[str, Any]]:
        return [citation.format() for citation in self.citations]

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(item, dict) and "cited_text" in item for item in data):
            return {"citations": [cls.Citation(**item) for item in data]}
        if isinstance(data, dict):
            if isinstance(data.get("citations"), list):
                return {"citations": [cls.Citation(**item) if isinstance(item, dict) else item
                                      for item in data["citations"]]}
            if "citations" not in data and "cited_text" in data:
                return {"citations": [cls.Citation(**data)]}
        shown = repr(data) if len(repr(data)) <= 200 else repr(data)[:200] + "..."
        raise ExampleError(f"Received invalid value for `Citations`: {shown} (expected a list of citations, each "
                           "with cited_text, document_index, start_char_index and end_char_index)")

    def __iter__(self):  # type: ignore[override]  # the citations, like a list
        return iter(self.citations)

    def __len__(self) -> int:
        return len(self.citations)

    def __getitem__(self, index: Any) -> Any:
        return self.citations[index]

    @classmethod
    def adapt_to_native_lm_feature(cls, signature: Any, field_name: str, lm: Any, lm_kwargs: dict[str, Any]) -> Any:
        """An Anthropic model cites natively: the field leaves the prompt (its value comes from the
        response's citation data)."""
        delete = getattr(signature, "delete", None)
        if str(getattr(lm, "model", "")).startswith("anthropic/") and delete is not None:
            return delete(field_name)
        return signature

    @classmethod
    def is_streamable(cls) -> bool:
        return True

    @classmethod
    def parse_stream_chunk(cls, chunk: Any) -> Optional["Citations"]:
        """The citation a streamed chunk carries (``delta.provider_specific_fields["citation"]``), or None."""
        try:
            choices = getattr(chunk, "choices", None)
            if choices:
                extra = getattr(choices[0].delta, "provider_specific_fields", None) or {}
                citation = extra.get("citation")
                if citation:
                    return cls.from_dict_list([citation])
        except (AttributeError, IndexError, TypeError, KeyError, ValueError):
            return None
        return None

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> Optional["Citations"]:
        """The citations of a response dict (its ``citations`` list), or None."""
        if isinstance(response, dict) and isinstance(response.get("citations"), list):
            return cls.from_dict_list(response["citations"])
        return None
