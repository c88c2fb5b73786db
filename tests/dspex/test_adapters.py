"""Adapters: formatting rules, tolerant/strict parsing, and round-trip properties."""

from __future__ import annotations

import string
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dspex
from dspex import AdapterParseError, ChatAdapter, JSONAdapter, Signature, TextAdapter
from tests.dspex.test_signature import NAMES

QA = Signature("question, context -> answer: str, confidence: float")


def test_chat_format_shape():
    demos = [{"question": "q0", "context": "c0", "answer": "a0", "confidence": 0.9}, {"question": "q1", "answer": "a1"}]
    msgs = ChatAdapter().format(QA, demos, {"question": "q", "context": "c"})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "[[ ## question ## ]]" in msgs[0]["content"] and QA.instructions in msgs[0]["content"]
    # as DSPy: the incomplete demo first (marked), its missing output "Not supplied"; then the complete one
    assert "not supplied" in msgs[1]["content"] and "Not supplied" in msgs[2]["content"]
    assert "[[ ## context ## ]]" not in msgs[1]["content"]  # a missing input is left out
    assert msgs[4]["content"].endswith("[[ ## completed ## ]]\n")
    assert msgs[-1]["content"].startswith("[[ ## question ## ]]\nq")


def test_chat_parse_tolerant_and_strict():
    text = "  [[ ## confidence ## ]]  \n 0.5 \n[[ ## answer ## ]]\n  Paris \n[[ ## completed ## ]]"
    assert ChatAdapter().parse(QA, text) == {"answer": "Paris", "confidence": 0.5}
    with pytest.raises(AdapterParseError) as info:
        ChatAdapter().parse(QA, "[[ ## answer ## ]]\nParis")
    assert info.value.missing_fields == ("confidence",) and info.value.raw_text.startswith("[[")
    with pytest.raises(AdapterParseError, match="Failed to parse field confidence"):
        ChatAdapter().parse(QA, "[[ ## answer ## ]]\nParis\n[[ ## confidence ## ]]\nvery")


def test_json_adapter():
    adapter = JSONAdapter()
    assert adapter.parse(QA, 'Sure!\n```json\n{"answer": "Paris", "confidence": "0.5"}\n```') == \
        {"answer": "Paris", "confidence": 0.5}
    assert adapter.response_format(QA)["json_schema"]["schema"]["required"] == ["answer", "confidence"]
    with pytest.raises(AdapterParseError) as info:
        adapter.parse(QA, '{"answer": "Paris"}')
    assert info.value.missing_fields == ("confidence",)
    assert adapter.parse(QA, "{'answer': 'Paris', 'confidence': 1,}") == {"answer": "Paris", "confidence": 1.0}
    with pytest.raises(AdapterParseError, match="cannot be serialized to a JSON object"):
        adapter.parse(QA, '{"answer": "Paris", ')
    with pytest.raises(AdapterParseError, match="cannot be serialized to a JSON object"):
        adapter.parse(QA, "Paris")


def test_text_adapter_completion_style():
    class Sentiment(Signature):
        """Classify the sentiment."""

        sentence: str = dspex.InputField()
        sentiment: Literal["positive", "negative"] = dspex.OutputField()

    prompt = TextAdapter().prompt(Sentiment, {"sentence": "great"}, [{"sentence": "awful", "sentiment": "negative"}])
    assert prompt == "Classify the sentiment.\n\nSentence: awful\nSentiment: negative\n\nSentence: great\nSentiment:"
    assert TextAdapter().parse(Sentiment, " Positive\n\nSentence: more text\nSentiment: negative") == \
        {"sentiment": "positive"}
    with pytest.raises(AdapterParseError, match="not one of"):
        TextAdapter().parse(Sentiment, " neutral")


def test_missing_inputs_are_reported():
    for adapter in (ChatAdapter(), JSONAdapter(), TextAdapter()):
        with pytest.raises(dspex.SignatureError, match="missing input"):
            adapter.check_inputs(QA, {"question": "q"})


SAFE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,!?'-", min_size=1, max_size=30).map(
    str.strip).filter(bool)
VALUE_FOR = {
    "str": SAFE_TEXT, "int": st.integers(-10**6, 10**6), "float": st.floats(-1e6, 1e6, allow_nan=False),
    "bool": st.booleans(), "list[str]": st.lists(SAFE_TEXT, max_size=4), "list[int]": st.lists(st.integers(), max_size=4),
    "dict": st.dictionaries(SAFE_TEXT, st.integers(), max_size=3), "Literal['a', 'b']": st.sampled_from(["a", "b"]),
}


@st.composite
def signature_and_values(draw):
    names = draw(st.lists(NAMES, min_size=2, max_size=5, unique=True))
    cut = draw(st.integers(1, len(names) - 1))
    types = [draw(st.sampled_from(sorted(VALUE_FOR))) for _ in names]
    spec = f"{', '.join(f'{n}: {t}' for n, t in zip(names[:cut], types[:cut]))} -> " \
           f"{', '.join(f'{n}: {t}' for n, t in zip(names[cut:], types[cut:]))}"
    values = {n: draw(VALUE_FOR[t]) for n, t in zip(names[cut:], types[cut:])}
    return Signature(spec), values


@settings(max_examples=200)
@given(signature_and_values(), st.sampled_from([ChatAdapter(), JSONAdapter(), TextAdapter()]))
def test_parse_inverts_format_answer(sig_values, adapter):
    sig, values = sig_values
    assert adapter.parse(sig, adapter.format_answer(sig, values)) == values
