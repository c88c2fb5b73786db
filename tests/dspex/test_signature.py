"""Signature rules and properties."""

from __future__ import annotations

import pickle
import string
from typing import Literal, Optional

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dspex
from dspex import InputField, OutputField, Signature, SignatureError


class Point(pydantic.BaseModel):
    x: int
    y: int


def test_string_and_class_forms():
    qa = Signature("question, context -> answer")
    assert list(qa.input_fields) == ["question", "context"] and list(qa.output_fields) == ["answer"]
    typed = Signature("question: str, k: int -> answers: list[str], confidence: float", instructions="Give k answers.")
    assert typed.output_fields["answers"].annotation == list[str] and typed.instructions == "Give k answers."

    class Classify(Signature):
        """Classify the sentiment of a sentence."""

        sentence: str = InputField(desc="a movie review sentence")
        sentiment: Literal["positive", "negative"] = OutputField()

    assert Classify.instructions == "Classify the sentiment of a sentence."
    assert Classify.input_fields["sentence"].desc == "a movie review sentence"
    assert Classify.signature_string() == "sentence: str -> sentiment: Literal['positive', 'negative']"


def test_types_supported():
    sig = Signature("a: Optional[int], b: dict, c: bool -> p: Point, q: Literal['x', 'y']", custom_types={"Point": Point})
    assert sig.input_fields["a"].annotation == Optional[int]
    assert sig.output_fields["p"].annotation is Point


def test_edits_return_new_signatures():
    qa = Signature("question -> answer")
    cot = qa.prepend("reasoning", OutputField(desc="step by step"))
    assert list(cot.output_fields) == ["reasoning", "answer"] and list(qa.output_fields) == ["answer"]
    assert list(qa.append("context", InputField()).input_fields) == ["question", "context"]
    assert qa.with_instructions("Be brief.").instructions == "Be brief." and qa.with_instructions("x") != qa
    with pytest.raises(SignatureError, match="already has"):
        qa.append("answer", OutputField())


def test_equality_hashing_pickling():
    a, b = Signature("q: int -> a"), Signature("q: int -> a")
    assert a == b and hash(a) == hash(b) and a != Signature("q -> a")
    assert pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize("bad, needle", [
    ("question answer", "missing '->'"), (" -> answer", "input side is empty"), ("q -> ", "output side is empty"),
    ("a, a -> b", "appears twice"), ("a -> a", "both input and output"), ("a-b -> c", "not a valid field name"),
    ("a: Foo -> b", "unknown type 'Foo'"), ("a -> usage", "reserved"), ("a -> b -> c", "more than one"),
    ("a,, b -> c", "empty field name"), ("a: list[ -> b", "cannot parse type"),
])
def test_bad_strings(bad, needle):
    with pytest.raises(SignatureError, match=needle):
        Signature(bad)


def test_bad_classes():
    with pytest.raises(SignatureError, match="InputField"):
        type("Bad", (Signature,), {"__annotations__": {"x": str}, "x": 3})
    with pytest.raises(SignatureError, match="no output fields"):
        class OnlyIn(Signature):
            x: str = InputField()


@given(st.text(alphabet=string.printable, max_size=40))
def test_bad_strings_only_raise_signature_error(text):
    try:
        Signature(text)
    except SignatureError:
        pass


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in dspex.signature.RESERVED and not __import__("keyword").iskeyword(n))
TYPES = st.sampled_from(["str", "int", "float", "bool", "list[str]", "list[int]", "dict", "Optional[int]",
                         "Literal['a', 'b']"])


@st.composite
def signatures(draw):
    names = draw(st.lists(NAMES, min_size=2, max_size=6, unique=True))
    cut = draw(st.integers(1, len(names) - 1))
    typed = [f"{n}: {draw(TYPES)}" for n in names]
    return f"{', '.join(typed[:cut])} -> {', '.join(typed[cut:])}"


@given(signatures())
def test_string_round_trip_is_stable(spec):
    once = Signature(spec).signature_string()
    assert once == spec
    assert Signature(once).signature_string() == once
