"""Signatures as DSPy users write them."""

from __future__ import annotations

from typing import Optional

import pytest

import dspex as dspy
from dspex.testing import ProviderServer

from ..scripted import chat


class Untyped(dspy.Signature):
    """Answer briefly."""

    question = dspy.InputField()
    hint: Optional[str] = dspy.InputField()
    answer = dspy.OutputField()
    note: Optional[str] = dspy.OutputField()
    confidence: float = dspy.OutputField(default=0.5)


def test_untyped_fields_are_str_and_optionals_may_be_missing(tmp_path):
    assert [f.annotation for f in Untyped.fields.values()][:1] == [str]
    assert list(Untyped.fields) == ["question", "hint", "answer", "note", "confidence"]
    with ProviderServer(answer=chat(answer="Paris"), api_key="sk-test-sig-1234") as server, \
            dspy.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = dspy.LM("openai/m", api_base=server.base_url(), api_key="sk-test-sig-1234")
        pred = dspy.Predict(Untyped, lm=lm)(question="Capital of France?")  # the optional hint left out
    assert (pred.answer, pred.note, pred.confidence) == ("Paris", None, 0.5)


def test_signature_edits_and_names():
    sig = dspy.Signature("question, items -> answer")  # `items` is an ordinary field name
    assert sig.signature == "question, items -> answer"
    longer = sig.append_instructions("Be terse.")
    assert longer.instructions.endswith("Be terse.") and not sig.instructions.endswith("Be terse.")
    typed = sig.with_updated_fields("answer", type_=int, desc="a number")
    assert typed.output_fields["answer"].annotation is int and typed.output_fields["answer"].desc == "a number"
    assert sig.equals(dspy.Signature("question, items -> answer")) and not sig.equals(typed)
    with pytest.raises(dspy.SignatureError, match="reserved"):
        dspy.Signature("question -> usage")
