"""Signatures read and edited through DSPy's API (``import dspex as dspy``), from DSPy's documented behaviour."""

from __future__ import annotations

import copy
import pickle
import typing
from pathlib import Path
from typing import Optional, Tuple, Union

import pydantic
import pytest

import dspex as dspy
from dspex.errors import SignatureError
from dspex.signature import InputField, OutputField, Signature, SignatureTypeError, infer_prefix, make_signature


class Report(pydantic.BaseModel):
    title: str


class Outer:
    class Inner(pydantic.BaseModel):
        n: int


def test_field_infos_answer_dspy_reads():
    class Rate(Signature):
        """Rate the review."""

        review: str = InputField(desc="a review", prefix="Review text:")
        stars: int = OutputField(ge=1, le=5, description="1 to 5")
        note = OutputField(default="none", json_schema_extra={"ui": "hidden"})

    review, stars, note = Rate.fields.values()
    assert review.json_schema_extra == {"__dspy_field_type": "input", "desc": "a review", "prefix": "Review text:"}
    assert review.annotation is str and review.description is None and review.is_required()
    assert review.default is pydantic.fields.PydanticUndefined
    assert stars.json_schema_extra["constraints"] == "greater than or equal to: 1, less than or equal to: 5"
    assert stars.description == "1 to 5" and stars.json_schema_extra["desc"] == "1 to 5"
    assert note.default == "none" and not note.is_required() and note.json_schema_extra["ui"] == "hidden"
    assert note.json_schema_extra["IS_TYPE_UNDEFINED"] is True and note.annotation is str
    assert note.json_schema_extra["prefix"] == "Note:" and note.json_schema_extra["desc"] == "${note}"


def test_json_schema_extra_is_read_only_but_copies_are_plain_dicts():
    extra = Signature("question -> answer").fields["answer"].json_schema_extra
    with pytest.raises(SignatureError, match="with_updated_fields"):
        extra["prefix"] = "A:"
    for clone in (copy.copy(extra), copy.deepcopy(extra), extra.copy()):
        clone["prefix"] = "A:"
        assert type(clone) is dict


def test_fields_list_inputs_before_outputs_in_declaration_order():
    class Mixed(Signature):
        answer = OutputField()
        question = InputField()
        score: float = OutputField()

    assert list(Mixed.fields) == ["question", "answer", "score"]
    assert Mixed.signature == "question -> answer, score"


def test_untyped_class_attribute_and_plain_pydantic_field_are_type_errors():
    with pytest.raises(TypeError, match="InputField"):
        class Bare(Signature):
            question: str

    with pytest.raises(SignatureTypeError):
        class Plain(Signature):
            question: str = pydantic.Field()
            answer: str = OutputField()


def test_class_variables_and_private_names_are_not_fields():
    from typing import ClassVar

    class WithExtras(Signature):
        version: ClassVar[int] = 2
        _cache: dict = {}
        question = InputField()
        answer = OutputField()

    assert list(WithExtras.fields) == ["question", "answer"] and WithExtras.version == 2


def test_output_only_signature_and_inherited_instructions():
    class Joke(Signature):
        """Tell a joke.
            Keep it short."""

        joke = OutputField()

    assert Joke.input_fields == {} and Joke.instructions == "Tell a joke.\nKeep it short."  # cleandoc

    class LongJoke(Joke):
        topic = InputField()

    assert LongJoke.instructions == Joke.instructions and list(LongJoke.fields) == ["topic", "joke"]


def test_string_forms_and_typing_names():
    sig = Signature("pairs: Tuple[int, str], maybe: Optional[int], either: int | None -> out: tuple[str, ...]")
    assert sig.input_fields["pairs"].annotation == tuple[int, str]
    assert sig.input_fields["maybe"].annotation == Optional[int] == sig.input_fields["either"].annotation
    assert sig.output_fields["out"].annotation == tuple[str, ...]
    assert Signature("a -> b", instructions="Do it.").instructions == "Do it."
    assert Signature("a -> b", "Do it.", signature_name="Named").__name__ == "Named"
    assert Signature("a, b -> c").instructions == "Given the fields `a`, `b`, produce the fields `c`."


def test_custom_types_found_in_callers_scope():
    class Local(pydantic.BaseModel):
        x: int

    sig = Signature("a: Local, p: Path -> r: Report, i: Outer.Inner, items: list[Local]")
    assert sig.input_fields["a"].annotation is Local and sig.input_fields["p"].annotation is Path
    assert sig.output_fields["r"].annotation is Report and sig.output_fields["i"].annotation is Outer.Inner
    assert sig.output_fields["items"].annotation == list[Local]

    def build(spec):  # found through intermediate frames too (e.g. Predict("...") in a module's __init__)
        return dspy.Predict(spec).signature

    assert build("q -> r: Report").output_fields["r"].annotation is Report


def test_custom_types_argument_disables_the_scope_lookup():
    made = pydantic.create_model("Made", v=(int, ...))
    sig = Signature("a: Thing -> b: Outer.Inner", custom_types={"Thing": made, "Outer.Inner": Outer.Inner})
    assert sig.input_fields["a"].annotation is made and sig.output_fields["b"].annotation is Outer.Inner
    with pytest.raises(SignatureError, match="unknown type 'Report'"):
        Signature("a -> b: Report", custom_types={})
    with pytest.raises(ValueError, match="custom_types"):
        Signature("a -> b: NoSuchType")


def test_non_types_from_the_scope_are_refused():
    not_a_type = 42  # noqa: F841 - looked up by name
    with pytest.raises(SignatureError, match="unsupported type"):
        Signature("a: not_a_type -> b")


def test_make_signature_forms():
    from_pairs = make_signature({"q": (list[str], InputField()), "a": (None, OutputField())}, "Answer.", "QA")
    assert from_pairs.__name__ == "QA" and from_pairs.input_fields["q"].annotation == list[str]
    assert from_pairs.output_fields["a"].annotation is str
    from_fields = Signature({"q": InputField(), "a": OutputField()})
    assert from_fields.signature == "q -> a" and from_fields.__name__ == "StringSignature"
    assert make_signature("q: Report -> a").input_fields["q"].annotation is Report
    with pytest.raises(SignatureError, match="InputField"):
        make_signature({"q": str, "a": OutputField()})


def test_insert_prepend_append_delete():
    base = Signature("question -> answer")
    sig = base.insert(0, "context", InputField(), list[str]).insert(-1, "score", OutputField(), float)
    assert list(sig.input_fields) == ["context", "question"] and list(sig.output_fields) == ["answer", "score"]
    assert sig.input_fields["context"].annotation == list[str]
    assert list(sig.insert(-2, "k", InputField()).input_fields) == ["context", "k", "question"]
    with pytest.raises(ValueError, match="index"):
        base.insert(3, "x", InputField())
    assert list(base.prepend("why", OutputField()).output_fields) == ["why", "answer"]
    assert list(base.append("hint", InputField()).input_fields) == ["question", "hint"]
    assert list(sig.delete("context").fields) == ["question", "answer", "score"]
    assert sig.delete("nope").equals(sig)
    assert list(base.fields) == ["question", "answer"]  # edits never change the original


def test_with_updated_fields_and_append_instructions():
    base = Signature("question -> answer", "Answer.")
    changed = base.with_updated_fields("answer", type_=int, prefix="Number:", desc="a number", format=str)
    extra = changed.output_fields["answer"].json_schema_extra
    assert (extra["prefix"], extra["desc"], extra["format"]) == ("Number:", "a number", str)
    assert changed.output_fields["answer"].annotation is int and base.output_fields["answer"].annotation is str
    assert base.append_instructions("Be terse.").instructions == "Answer.\n\nBe terse."
    with pytest.raises(SignatureError, match="no field"):
        base.with_updated_fields("missing", desc="x")


def test_dump_state_and_load_state_keys():
    class Tagged(Signature):
        """Tag it."""

        text = InputField(desc="some text")
        tag = OutputField()

    state = Tagged.dump_state()
    assert state == {"instructions": "Tag it.", "fields": [{"prefix": "Text:", "description": "some text"},
                                                           {"prefix": "Tag:", "description": "${tag}"}]}
    other = Signature("text -> tag", "Other.").with_updated_fields("tag", prefix="Label:", desc="a label")
    loaded = other.load_state(state)
    assert loaded.dump_state() == state and loaded.equals(Tagged) and other.instructions == "Other."
    assert loaded.fields["tag"].prefix == "" and loaded.fields["tag"].desc == ""  # DSPy's defaults stay implicit
    with pytest.raises(SignatureError, match="prefix and description"):
        other.load_state({"instructions": "x", "fields": [{"prefix": 3, "description": "y"}]})


def test_equals_and_instructions_setter():
    assert Signature("a: str | None -> b: int | str").equals(Signature("a: Optional[str] -> b: Union[int, str]"))
    assert not Signature("a -> b").equals(Signature("a -> b: int"))
    assert not Signature("a -> b").equals(Signature("a -> b").with_updated_fields("b", desc="different"))
    sig = Signature("a -> b")
    sig.instructions = "New."
    assert sig.instructions == "New." and sig.dump_state()["instructions"] == "New."


def test_repr_is_close_to_dspy():
    text = repr(Signature("question -> answer", "Answer."))
    assert text.startswith("StringSignature(question -> answer\n    instructions='Answer.'\n    question = Field(")
    assert "'__dspy_field_type': 'output'" in text and text.endswith("\n)")


def test_instances_hold_validated_values():
    sig = Signature("question, k: int -> answer")
    value = sig(question="q", k="3", answer="a")
    assert isinstance(value, sig) and isinstance(value, Signature) and value.k == 3
    with pytest.raises(SignatureError, match="missing"):
        sig(question="q")
    with pytest.raises(SignatureError, match="no field"):
        sig(question="q", k=1, answer="a", other=1)


def test_field_arguments_are_checked():
    with pytest.raises(TypeError, match="unknown argument"):
        InputField(dsc="typo")
    with pytest.warns(DeprecationWarning, match="format"):
        InputField(format=str)


def test_pickling_and_dspy_module_paths():
    class Local(Signature):
        """Local."""

        question: list[str] = InputField()
        answer = OutputField()

    restored = pickle.loads(pickle.dumps(Local))
    assert restored == Local and restored.instructions == "Local." and list(restored.fields) == ["question", "answer"]

    from dspex.signatures import OldInputField, infer_prefix as exported
    from dspex.signatures.field import new_to_old_field
    from dspex.signatures.signature import ensure_signature
    from dspex.signatures.utils import get_dspy_field_type

    assert exported is infer_prefix and get_dspy_field_type(Local.fields["answer"]) == "output"
    assert new_to_old_field(Local.fields["question"]) == OldInputField(prefix="Question:", desc="${question}")
    assert ensure_signature("a -> b", "Go.").instructions == "Go."
    with pytest.raises(ValueError, match="instructions"):
        ensure_signature(Local, "Go.")


@pytest.mark.parametrize("name, words", [("camelCaseText", "Camel Case Text"), ("snake_case_text", "Snake Case Text"),
                                         ("text2number", "Text 2 Number"), ("HTMLParser", "HTML Parser"),
                                         ("isHTTPSSecure123", "Is HTTPS Secure 123")])
def test_infer_prefix(name, words):
    assert infer_prefix(name) == words


def test_tuple_alias_and_text_adapter_prefix_display():
    sig = Signature("a: Tuple[int, int] -> b").with_updated_fields("b", prefix="Result:")
    assert typing.get_origin(sig.input_fields["a"].annotation) is tuple
    assert typing.get_args(sig.input_fields["a"].annotation) == typing.get_args(Tuple[int, int])
    assert sig.fields["b"].display("b") == "Result"  # DSPy's prefixes end in ':'; the text adapter adds its own
