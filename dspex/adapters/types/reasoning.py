"""``dspex.Reasoning``: an LM's reasoning as an output field that behaves like a string.

With a model that reasons natively, the adapter may drop the field from the prompt and fill it from the
provider's ``reasoning_content`` instead (:meth:`Reasoning.adapt_to_native_lm_feature`,
:meth:`Reasoning.parse_lm_response`); with any other model it is an ordinary text output. Either way the
value compares equal to, concatenates with and has the methods of its text.
"""

from __future__ import annotations

from typing import Any, Optional

import pydantic

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring


class Reasoning(Type):
    """Reasoning text in ``content``; ``str(r)``, ``r == "text"``, ``len(r)``, ``r[0:5]``, ``"x" in r``,
    ``r + "..."`` and every ``str`` method (``r.strip()``, ``r.split()``) work on the text."""

    content: str

    model_config = pydantic.ConfigDict(json_schema_extra=schema_without_docstring)

    def format(self) -> str:
        return self.content

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, str):
            return {"content": data}
        if isinstance(data, dict):
            if "content" not in data:
                raise ExampleError("`content` field is required for `dspex.Reasoning`")
            if not isinstance(data["content"], str):
                raise ExampleError("`content` field must be a string, but received type: "
                                   f"{type(data['content']).__name__}")
            return {"content": data["content"]}
        raise ExampleError(f"Received invalid value for `dspex.Reasoning`: {data!r} (pass the text)")

    @classmethod
    def adapt_to_native_lm_feature(cls, signature: Any, field_name: str, lm: Any, lm_kwargs: dict[str, Any]) -> Any:
        """Use the LM's native reasoning when it has it: set ``reasoning_effort`` in ``lm_kwargs`` (the call's
        value, else the LM's, else ``"low"``) and return the signature without ``field_name``. Left alone
        when the effort is explicitly None, the LM does not reason natively, the signature cannot drop a
        field, or the model is a GPT-5 on the chat API (whose reasoning text the chat API does not return)."""
        lm_defaults = getattr(lm, "kwargs", None) or {}
        if "reasoning_effort" in lm_kwargs:
            effort = lm_kwargs["reasoning_effort"]
        elif "reasoning_effort" in lm_defaults:
            effort = lm_defaults["reasoning_effort"]
        else:
            effort = "low"
        if effort is None or not getattr(lm, "supports_reasoning", False):
            return signature
        if "gpt-5" in str(getattr(lm, "model", "")) and getattr(lm, "model_type", "chat") == "chat":
            return signature
        delete = getattr(signature, "delete", None)
        if delete is None:
            return signature
        lm_kwargs["reasoning_effort"] = effort
        return delete(field_name)

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> Optional["Reasoning"]:
        """The provider's ``reasoning_content`` of a response dict, or None."""
        if isinstance(response, dict) and response.get("reasoning_content") is not None:
            return cls(content=response["reasoning_content"])
        return None

    @classmethod
    def parse_stream_chunk(cls, chunk: Any) -> str | None:
        """The reasoning text a streamed chunk's first choice carries (``delta.reasoning_content``), or None."""
        try:
            choices = getattr(chunk, "choices", None)
            if choices:
                return getattr(choices[0].delta, "reasoning_content", None)
        except (AttributeError, IndexError, TypeError, KeyError):
            return None
        return None

    @classmethod
    def is_streamable(cls) -> bool:
        return True

    def __repr__(self) -> str:
        return repr(self.content)

    def __str__(self) -> str:
        return self.content

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasoning):
            return self.content == other.content
        if isinstance(other, str):
            return self.content == other
        return False

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # mutable, and equal to plain strings

    def __len__(self) -> int:
        return len(self.content)

    def __getitem__(self, key: Any) -> str:
        return self.content[key]

    def __contains__(self, item: object) -> bool:
        return item in self.content

    def __iter__(self):  # type: ignore[override]  # iterates the text, like a str
        return iter(self.content)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, Reasoning):
            return Reasoning(content=self.content + other.content)
        if isinstance(other, str):
            return self.content + other
        return NotImplemented

    def __radd__(self, other: Any) -> Any:
        if isinstance(other, str):
            return other + self.content
        return NotImplemented

    def __getattr__(self, name: str) -> Any:
        """``str`` methods and attributes come from the text; pydantic's own (underscored) lookups go on."""
        if name.startswith("_"):
            return super().__getattr__(name)  # type: ignore[misc]
        if hasattr(str, name):
            return getattr(self.content, name)
        raise AttributeError(f"`{type(self).__name__}` object has no attribute '{name}'. A Reasoning value (e.g. "
                             "ChainOfThought's `reasoning`) behaves like a string: use str(value) or value.content "
                             "for the text itself.")
