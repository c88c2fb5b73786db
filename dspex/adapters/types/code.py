"""``dspex.Code``: source code as a field, input or output; ``Code["java"]`` names the language.

As an output, the LM is asked for a fenced markdown block and the code inside the first fence is kept
(the language tag and any prose around it are dropped). As an input it is shown as the bare code.
"""

from __future__ import annotations

import re
import threading
from typing import Any, ClassVar

import pydantic

from ...errors import ExampleError
from .base_type import Type, schema_without_docstring

_FENCED_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)  # ```python\n...\n```
_INLINE_FENCE = re.compile(r"```(.*?)```", re.DOTALL)  # ```x = 1```
_ENCODED_PREFIX = "Code__lang_"


class Code(Type):
    """Code in ``code``; the class's ``language`` (``"python"`` unless made with ``Code["<language>"]``) is
    told to the LM in :meth:`description`."""

    code: str

    model_config = pydantic.ConfigDict(json_schema_extra=schema_without_docstring)

    language: ClassVar[str] = "python"

    def format(self) -> str:
        return self.code

    @pydantic.model_serializer()
    def serialize_model(self) -> str:
        """Plain text: code is never a content-part block."""
        return self.format()

    @classmethod
    def description(cls) -> str:
        return ("Code represented in a string, specified in the `code` field. If this is an output field, the code "
                "field should follow the markdown code block format, e.g. \n"
                f"```{cls.language.lower()}\n{{code}}\n```\nProgramming language: {cls.language}")

    @pydantic.model_validator(mode="before")
    @classmethod
    def validate_input(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, Code):  # the same code under another language's class
            return {"code": data.code}
        if isinstance(data, str):
            return {"code": _filter_code(data)}
        if isinstance(data, dict):
            if "code" not in data:
                raise ExampleError(f"`code` field is required for `{cls.__name__}`")
            if not isinstance(data["code"], str):
                raise ExampleError(f"`code` field must be a string, but received type: {type(data['code']).__name__}")
            return {"code": _filter_code(data["code"])}
        raise ExampleError(f"Received invalid value for `{cls.__name__}`: {data!r} (pass the code as a string)")

    def __class_getitem__(cls, language: Any) -> type["Code"]:  # Code["java"]
        if not isinstance(language, str) or not language.strip():
            raise ExampleError(f"Code[...] takes a language name string like Code['python'], got {language!r}")
        return _with_language(cls, language)


def _filter_code(text: str) -> str:
    """The code inside the first markdown fence of ``text`` (stripped), or ``text`` itself if it has none."""
    found = _FENCED_BLOCK.search(text) or _INLINE_FENCE.search(text)
    return found.group(1).strip() if found else text


_made: dict[tuple[type, str], type[Code]] = {}
_made_lock = threading.Lock()


def _attribute_name(language: str) -> str:
    """The module attribute a ``Code[language]`` class is reachable under (so instances pickle by
    reference and unpickle in a fresh process: see the module ``__getattr__``)."""
    if language.isidentifier() and not language.startswith("_"):
        return f"Code_{language}"
    return _ENCODED_PREFIX + language.encode("utf-8").hex()


def _with_language(base: type[Code], language: str) -> type[Code]:
    with _made_lock:
        made = _made.get((base, language))
        if made is None:
            made = pydantic.create_model(f"{base.__name__}_{language}", __base__=base, __module__=__name__)
            made.language = language
            if base is Code:
                made.__qualname__ = _attribute_name(language)
            _made[(base, language)] = made
        return made


def __getattr__(name: str) -> Any:
    if name.startswith(_ENCODED_PREFIX):
        try:
            return _with_language(Code, bytes.fromhex(name[len(_ENCODED_PREFIX):]).decode("utf-8"))
        except ValueError:
            pass
    elif name.startswith("Code_") and name[len("Code_"):].isidentifier() and not name[len("Code_"):].startswith("_"):
        return _with_language(Code, name[len("Code_"):])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
