"""dspex.Code and Code["<language>"]."""

from __future__ import annotations

import json
import pickle

import pydantic
import pytest

from dspex.adapters.types import Code, Type
from dspex.errors import ExampleError


class TestLanguage:
    def test_default_language(self):
        assert Code.language == "python"
        assert "Programming language: python" in Code.description()
        assert "```python\n{code}\n```" in Code.description()

    def test_subscript_makes_one_class_per_language(self):
        java = Code["java"]
        assert java is Code["java"]
        assert issubclass(java, Code) and issubclass(java, Type)
        assert java.__name__ == "Code_java" and java.language == "java"
        assert "Programming language: java" in java.description()
        assert java(code="class A {}").language == "java"
        assert Code.language == "python"  # the base is untouched

    def test_a_language_that_is_not_an_identifier(self):
        cpp = Code["C++"]
        assert cpp.language == "C++" and "```c++" in cpp.description()

    def test_a_bad_language(self):
        with pytest.raises(ExampleError, match="language name"):
            Code[3]

    @pytest.mark.parametrize("language", ["python", "c++", "objective-c"])
    def test_pickle_by_reference(self, language):
        value = Code[language](code="x = 1")
        restored = pickle.loads(pickle.dumps(value))
        assert type(restored) is Code[language] and restored == value


class TestValidation:
    def test_plain_code(self):
        assert Code(code="print(1)").code == "print(1)"
        assert Code.model_validate("print(1)").code == "print(1)"

    def test_fenced_code_is_unwrapped(self):
        assert Code(code="```python\nprint('hi')\n```").code == "print('hi')"
        assert Code(code="```python\nprint('hi')```").code == "print('hi')"
        assert Code(code="```x = 1```").code == "x = 1"
        prose = "Here it is:\n```js\nlet a = 1;\n```\nIt declares a."
        assert Code["javascript"].model_validate(prose).code == "let a = 1;"

    def test_unfenced_code_keeps_its_whitespace(self):
        source = "def f(x):\n    return x + 1\n"
        assert Code["python"](code=source).code == source

    def test_another_languages_value_is_accepted(self):
        assert Code["python"].model_validate(Code["java"](code="int a;")).code == "int a;"

    @pytest.mark.parametrize("bad", [123, {"text": "x"}, {"code": 5}, ["x"]])
    def test_refusals(self, bad):
        with pytest.raises(ValueError):
            Code.model_validate(bad) if not isinstance(bad, int) else Code["python"](code=bad)

    def test_in_a_model(self):
        class Holder(pydantic.BaseModel):
            snippet: Code

        assert Holder(snippet=Code(code="x")).snippet.code == "x"
        assert Holder(snippet="```\ny\n```").snippet.code == "y"


class TestSerialization:
    def test_code_is_plain_text(self):
        value = Code(code="print(1)")
        assert value.format() == "print(1)"
        assert value.model_dump() == "print(1)"
        assert json.loads(value.model_dump_json()) == "print(1)"
        assert Code.model_validate(value.model_dump()) == value

    def test_schema_has_no_docstring(self):
        assert "description" not in Code.model_json_schema()
