"""``dspex.Type``: the base of custom field types (``Image``, ``Audio``, ``File``, ``Code``, ...).

A custom type is a pydantic model that knows how it is shown to an LM. ``format()`` returns either

* a **list of content parts** (the OpenAI chat ``content`` array: ``{"type": "image_url", ...}``,
  ``{"type": "input_audio", ...}``, ``{"type": "file", ...}``), for values that are not text; or
* a **string** (or any JSON value), for values that are text after all (``Code``, ``Reasoning``).

Adapters render a whole user turn as *one string* first. A value whose ``format()`` is a list of parts
serializes (``model_dump``, ``str``) to that list as JSON between two reserved markers::

    <<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "image_url", ...}]<<CUSTOM-TYPE-END-IDENTIFIER>>

so it survives any rendering of the field (alone, inside a list, inside a pydantic model dumped as JSON,
in a saved demo). :func:`split_message_content_for_custom_types` then cuts each user message's string at
the markers and returns the content-part list the provider receives.
"""

from __future__ import annotations

import ast
import json
import re
import typing
from typing import Any, Optional

import pydantic

CUSTOM_TYPE_START_IDENTIFIER = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END_IDENTIFIER = "<<CUSTOM-TYPE-END-IDENTIFIER>>"

_MARKED = re.compile(re.escape(CUSTOM_TYPE_START_IDENTIFIER) + r"(.*?)" + re.escape(CUSTOM_TYPE_END_IDENTIFIER),
                     re.DOTALL)
# how many levels of JSON string escaping a marked block may sit under (a value inside a model inside a
# list dumped with json.dumps is escaped twice)
_MAX_UNESCAPE = 4


def schema_without_docstring(schema: dict[str, Any], cls: type | None = None) -> None:
    """A ``json_schema_extra`` hook for dspex's own types: their docstrings are for programmers, so they are
    kept out of the JSON schema an adapter may show the LM."""
    schema.pop("description", None)


def wrap_content_parts(parts: list[Any]) -> str:
    """The marked string a list of content parts serializes to (what ``Type.serialize_model`` returns)."""
    return f"{CUSTOM_TYPE_START_IDENTIFIER}{json.dumps(parts, ensure_ascii=False)}{CUSTOM_TYPE_END_IDENTIFIER}"


class Type(pydantic.BaseModel):
    """Base class of custom types for signature fields.

    Subclass it, declare pydantic fields, and implement :meth:`format`::

        class Sketch(dspex.Type):
            url: str

            def format(self):
                return [{"type": "image_url", "image_url": {"url": self.url}}]

    ``description()`` is a sentence adapters may add to the field's description in the prompt.
    """

    def format(self) -> list[dict[str, Any]] | str:
        """How the value is shown to the LM: a list of content parts, or text."""
        raise NotImplementedError(f"{type(self).__name__} must implement format() to be used as a field type")

    @classmethod
    def description(cls) -> str:
        """A description of the type for the prompt ("" when nothing needs saying)."""
        return ""

    @classmethod
    def extract_custom_type_from_annotation(cls, annotation: Any) -> list[type]:
        """Every subclass of ``cls`` named in ``annotation``, at any depth, in the order they appear:
        ``list[dict[Key, Event]]`` gives ``[Key, Event]``; ``Image | None`` gives ``[Image]``."""
        try:
            if isinstance(annotation, type) and issubclass(annotation, cls):
                return [annotation]
        except TypeError:  # a parametrized generic that passes isinstance(type) on some Pythons
            pass
        if typing.get_origin(annotation) is None:
            return []
        found: list[type] = []
        for arg in typing.get_args(annotation):
            found.extend(cls.extract_custom_type_from_annotation(arg))
        return found

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        """A list of content parts becomes its marked string (see the module's docstring); anything else
        ``format()`` returns is the serialized value itself."""
        formatted = self.format()
        if isinstance(formatted, list):
            return wrap_content_parts(formatted)
        return formatted

    @classmethod
    def adapt_to_native_lm_feature(cls, signature: Any, field_name: str, lm: Any, lm_kwargs: dict[str, Any]) -> Any:
        """When ``lm`` offers this type natively (native reasoning, citations, tool calls), return the
        signature without ``field_name`` and update ``lm_kwargs`` in place to turn the feature on; else the
        signature unchanged (the default)."""
        return signature

    @classmethod
    def is_streamable(cls) -> bool:
        """Whether a stream chunk can carry a value of this type (see :meth:`parse_stream_chunk`)."""
        return False

    @classmethod
    def parse_stream_chunk(cls, chunk: Any) -> Optional["Type"]:
        """The value a stream chunk carries for this type, or None."""
        return None

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> Optional["Type"]:
        """The value of this type a (native) LM response carries, or None."""
        return None


def split_message_content_for_custom_types(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn each user message whose string content holds marked custom-type blocks into a list of
    content parts, in place (the list is also returned).

    Text around the blocks becomes ``{"type": "text", "text": ...}`` parts; each block's JSON list is
    spliced in part by part. A block that is not JSON (even after undoing string escaping) is kept as a
    text part of its inner text. Messages of other roles, non-string contents and user messages without a
    block are left as they are.
    """
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, str):
            continue
        parts: list[Any] = []
        position = 0
        for match in _MARKED.finditer(content):
            start, end = match.span()
            if start > position:
                parts.append({"type": "text", "text": content[position:start]})
            inner = match.group(1).strip()
            decoded = _decode_block(inner)
            if isinstance(decoded, list) and decoded:
                parts.extend(decoded)
            elif isinstance(decoded, dict):
                parts.append(decoded)
            else:
                parts.append({"type": "text", "text": inner})
            position = end
        if not parts:
            continue
        if position < len(content):
            parts.append({"type": "text", "text": content[position:]})
        message["content"] = parts
    return messages


def _decode_block(text: str) -> Any:
    """The JSON value of a marked block, undoing up to ``_MAX_UNESCAPE`` levels of string escaping (a
    block inside a JSON string has its quotes escaped); None when it is not JSON."""
    for _ in range(_MAX_UNESCAPE + 1):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
        try:
            unescaped = json.loads(f'"{text}"')
        except json.JSONDecodeError:
            break
        if not isinstance(unescaped, str) or unescaped == text:
            break
        text = unescaped
    try:  # a block rendered with Python's repr (single quotes) rather than JSON
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    return value if isinstance(value, (list, dict)) else None
