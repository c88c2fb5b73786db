"""dspex.Reasoning: a string-like output type, with hooks for native reasoning."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from dspex.adapters.types import Reasoning


class TestStringLike:
    def test_text_behaviour(self):
        r = Reasoning(content="Hello World")
        assert str(r) == "Hello World" and repr(r) == "'Hello World'"
        assert r == "Hello World" and r == Reasoning(content="Hello World")
        assert r != "hello world" and r != Reasoning(content="x") and r != 3
        assert len(r) == 11 and r[0] == "H" and r[-1] == "d" and r[0:5] == "Hello"
        assert "World" in r and "xyz" not in r
        assert list(r)[:2] == ["H", "e"]

    def test_concatenation(self):
        r = Reasoning(content="Hello")
        assert r + " World" == "Hello World" and type(r + " World") is str
        assert "Pre " + r == "Pre Hello" and type("Pre " + r) is str
        joined = r + Reasoning(content=" World")
        assert isinstance(joined, Reasoning) and joined.content == "Hello World"
        with pytest.raises(TypeError):
            r + 1

    def test_str_methods_are_delegated(self):
        r = Reasoning(content="  Hello World  ")
        assert r.strip() == "Hello World" and r.lower() == "  hello world  " and r.upper() == "  HELLO WORLD  "
        assert r.strip().split() == ["Hello", "World"] and r.replace("World", "You") == "  Hello You  "
        assert r.find("World") == 8 and r.count("l") == 3 and r.strip().startswith("Hello")

    def test_unknown_attributes(self):
        with pytest.raises(AttributeError, match="`Reasoning` object has no attribute 'nonexistent_method'"):
            Reasoning(content="x").nonexistent_method
        with pytest.raises(AttributeError):
            Reasoning(content="x")._private_thing

    def test_not_hashable_like_other_mutable_values(self):
        with pytest.raises(TypeError):
            hash(Reasoning(content="x"))


class TestValidationAndSerialization:
    def test_sources(self):
        assert Reasoning.model_validate("think").content == "think"
        assert Reasoning.model_validate({"content": "think"}).content == "think"
        r = Reasoning(content="x")
        assert Reasoning.model_validate(r) is r

    @pytest.mark.parametrize("bad", [{"text": "x"}, {"content": 1}, 5])
    def test_refusals(self, bad):
        with pytest.raises(ValueError):
            Reasoning.model_validate(bad)

    def test_serializes_as_its_text(self):
        r = Reasoning(content="step 1")
        assert r.format() == "step 1" and r.model_dump() == "step 1" and r.model_dump_json() == '"step 1"'
        assert Reasoning.model_validate(r.model_dump()) == r
        assert pickle.loads(pickle.dumps(r)) == r


class FakeSignature:
    def __init__(self, fields):
        self.fields = fields

    def delete(self, name):
        return FakeSignature([f for f in self.fields if f != name])


def lm(**attrs):
    return SimpleNamespace(**{"kwargs": {}, "supports_reasoning": True, "model": "provider/model",
                              "model_type": "chat", **attrs})


class TestNativeReasoning:
    def test_a_reasoning_lm_takes_over_the_field(self):
        kwargs = {}
        signature = FakeSignature(["q", "reasoning", "a"])
        adapted = Reasoning.adapt_to_native_lm_feature(signature, "reasoning", lm(), kwargs)
        assert adapted.fields == ["q", "a"] and kwargs == {"reasoning_effort": "low"}

    def test_the_effort_comes_from_the_call_then_the_lm(self):
        kwargs = {"reasoning_effort": "high"}
        Reasoning.adapt_to_native_lm_feature(FakeSignature(["reasoning"]), "reasoning",
                                             lm(kwargs={"reasoning_effort": "medium"}), kwargs)
        assert kwargs == {"reasoning_effort": "high"}
        kwargs = {}
        Reasoning.adapt_to_native_lm_feature(FakeSignature(["reasoning"]), "reasoning",
                                             lm(kwargs={"reasoning_effort": "medium"}), kwargs)
        assert kwargs == {"reasoning_effort": "medium"}

    @pytest.mark.parametrize("model, kwargs", [
        (lm(supports_reasoning=False), {}),
        (lm(), {"reasoning_effort": None}),
        (lm(model="openai/gpt-5-mini"), {}),
        (SimpleNamespace(), {}),  # an LM that says nothing about reasoning
    ])
    def test_otherwise_the_field_stays(self, model, kwargs):
        signature = FakeSignature(["reasoning"])
        before = dict(kwargs)
        assert Reasoning.adapt_to_native_lm_feature(signature, "reasoning", model, kwargs) is signature
        assert kwargs == before

    def test_parse_lm_response_and_stream_chunks(self):
        assert Reasoning.parse_lm_response({"text": "a", "reasoning_content": "because"}) == "because"
        assert Reasoning.parse_lm_response({"text": "a"}) is None
        assert Reasoning.parse_lm_response("reasoning_content") is None
        chunk = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(reasoning_content="hm"))])
        assert Reasoning.parse_stream_chunk(chunk) == "hm"
        assert Reasoning.parse_stream_chunk(SimpleNamespace(choices=[])) is None
        assert Reasoning.is_streamable()
