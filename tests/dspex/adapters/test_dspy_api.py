"""DSPy's adapter API on dspex's adapters: prompt text, demos, parsing, defaults, ``adapter(lm, ...)`` and the
JSON fallback, the XML and two-step adapters (behaviour as DSPy documents it)."""

from __future__ import annotations

import asyncio
import enum
from typing import Literal, Optional

import pydantic
import pytest

import dspex
from dspex.adapters.base import ParseFailure
from dspex.adapters.chat_adapter import ChatAdapter, FieldInfoWithName, field_header_pattern
from dspex.adapters.json_adapter import JSONAdapter
from dspex.adapters.two_step_adapter import TwoStepAdapter
from dspex.adapters.utils import (apply_output_field_defaults, format_field_value, get_annotation_name,
                                  parse_value, translate_field_type)
from dspex.adapters.xml_adapter import XMLAdapter
from dspex.errors import AdapterParseError, LMError


class QA(dspex.Signature):
    """Answer the question."""

    question: str = dspex.InputField()
    answer: str = dspex.OutputField()


class Scored(dspex.Signature):
    question: str = dspex.InputField()
    answer: str = dspex.OutputField()
    score: float = dspex.OutputField()


class ScriptedLM:
    """An LM as DSPy's adapters call it: ``lm(messages=..., **kwargs)`` -> a list of outputs."""

    def __init__(self, *answers, supported_params=()):
        self.answers, self.calls, self.supported_params = list(answers), [], supported_params

    def __call__(self, messages=None, **kwargs):
        self.calls.append({"messages": messages, "kwargs": kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return [answer]

    async def acall(self, messages=None, **kwargs):
        return self(messages=messages, **kwargs)


# --- ChatAdapter's prompt ----------------------------------------------------------------------------------

def test_chat_system_and_user_messages_are_dspys_text():
    system, user = ChatAdapter().format(QA, [], {"question": "Why?"})
    assert system == {"role": "system", "content": (
        "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `answer` (str):\n"
        "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
        "[[ ## question ## ]]\n{question}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\n"
        "In adhering to this structure, your objective is: \n        Answer the question.")}
    assert user == {"role": "user", "content": (
        "[[ ## question ## ]]\nWhy?\n\nRespond with the corresponding output fields, starting with the field "
        "`[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`.")}


def test_typed_outputs_get_notes_and_type_names():
    class Typed(dspex.Signature):
        q: str = dspex.InputField(desc="the query")
        flag: bool = dspex.OutputField()
        count: int = dspex.OutputField()
        verdict: Literal["yes", "no"] = dspex.OutputField()
        tags: list[str] = dspex.OutputField()

    text = ChatAdapter().format_system_message(Typed)
    assert "1. `q` (str): the query\n" in text
    assert "{flag}        # note: the value you produce must be True or False" in text
    assert "{count}        # note: the value you produce must be a single int value" in text
    assert "must exactly match (no extra characters) one of: yes; no" in text
    assert '{tags}        # note: the value you produce must adhere to the JSON schema: {"type": "array", ' \
           '"items": {"type": "string"}}' in text
    reminder = ChatAdapter().user_message_output_requirements(Typed)
    assert "`[[ ## verdict ## ]]` (must be formatted as a valid Python Literal['yes', 'no'])" in reminder


def test_annotation_names_quote_literals_like_python():
    assert get_annotation_name(Literal["she's", "ok"]) == "Literal[\"she's\", 'ok']"
    assert get_annotation_name(Literal[1, True, "x"]) == "Literal[1, True, 'x']"
    assert get_annotation_name(dict[str, list[int]]) == "dict[str, list[int]]"


def test_multiline_instructions_are_indented():
    sig = QA.with_instructions("Line one.\nLine two.")
    assert ChatAdapter().format_task_description(sig) == (
        "In adhering to this structure, your objective is: \n        Line one.\n        Line two.")


def test_list_for_a_text_input_is_a_numbered_list_and_structured_values_are_json():
    class Doc(pydantic.BaseModel):
        title: str

    assert format_field_value(QA.input_fields["question"], ["alpha", "beta"]) == "[1] «alpha»\n[2] «beta»"
    assert format_field_value(QA.input_fields["question"], []) == "N/A"
    assert format_field_value(QA.input_fields["question"], Doc(title="é")) == '{"title": "é"}'
    assert format_field_value(QA.input_fields["question"], 0.5) == "0.5"


def test_demos_incomplete_first_and_marked():
    demos = [{"question": "Q1", "answer": "A1", "score": 0.9}, {"question": "Q2", "answer": "A2"},
             {"question": "only an input"}]
    messages = ChatAdapter().format(Scored, demos, {"question": "Q3"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"].startswith("This is an example of the task, though some input or output fields")
    assert messages[2]["content"] == ("[[ ## answer ## ]]\nA2\n\n[[ ## score ## ]]\n"
                                      "Not supplied for this particular example.\n\n[[ ## completed ## ]]\n")
    assert messages[3]["content"] == "[[ ## question ## ]]\nQ1"
    assert messages[4]["content"] == "[[ ## answer ## ]]\nA1\n\n[[ ## score ## ]]\n0.9\n\n[[ ## completed ## ]]\n"


def test_examples_work_as_demos_and_missing_inputs_are_left_out():
    demo = dspex.Example(question="Q1", answer="A1", score=1.0)
    messages = ChatAdapter().format(Scored, [demo], {})
    assert messages[1]["content"] == "[[ ## question ## ]]\nQ1"
    assert messages[-1]["content"].startswith("Respond with the corresponding output fields")
    with pytest.raises(dspex.SignatureError, match="missing input"):
        ChatAdapter.check_inputs(Scored, {})


def test_format_field_with_value_takes_field_info_with_name():
    fields = {FieldInfoWithName("answer", Scored.output_fields["answer"]): "Paris",
              FieldInfoWithName("score", Scored.output_fields["score"]): 0.5}
    assert ChatAdapter().format_field_with_value(fields) == "[[ ## answer ## ]]\nParis\n\n[[ ## score ## ]]\n0.5"
    assert JSONAdapter().format_field_with_value(fields, role="assistant") == \
        '{\n  "answer": "Paris",\n  "score": 0.5\n}'
    assert XMLAdapter().format_field_with_value(fields) == "<answer>\nParis\n</answer>\n\n<score>\n0.5\n</score>"
    assert field_header_pattern.match("[[ ## answer ## ]]").group(1) == "answer"


# --- parsing -------------------------------------------------------------------------------------------------

def test_chat_parse_reads_sections_and_types():
    text = "[[ ## score ## ]] 0.25\n[[ ## answer ## ]]\nParis\nis nice\n[[ ## completed ## ]]"
    assert ChatAdapter().parse(Scored, text) == {"answer": "Paris\nis nice", "score": 0.25}


def test_chat_parse_errors_are_typed_and_name_the_problem():
    with pytest.raises(AdapterParseError) as info:
        ChatAdapter().parse(Scored, "[[ ## answer ## ]]\nParis")
    err = info.value
    assert isinstance(err, ParseFailure) and err.adapter_name == "ChatAdapter" and err.signature is Scored
    assert err.missing_fields == ("score",) and err.parsed_result == {"answer": "Paris"}
    assert "Expected to find output fields in the LM response: [answer, score]" in str(err)
    with pytest.raises(AdapterParseError, match="Failed to parse field score"):
        ChatAdapter().parse(Scored, "[[ ## answer ## ]]\nParis\n[[ ## score ## ]]\nhigh")


def test_parse_errors_survive_pickling():
    import pickle

    with pytest.raises(AdapterParseError) as info:
        JSONAdapter().parse(Scored, '{"answer": "x"}')
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.adapter_name == "JSONAdapter" and copy.missing_fields == ("score",)


def test_json_parse_is_tolerant_of_python_literals_and_prose():
    adapter = JSONAdapter()
    assert adapter.parse(Scored, "{'answer': 'Paris', 'score': 1_0.5}") == {"answer": "Paris", "score": 10.5}
    assert adapter.parse(Scored, 'Here you go:\n```json\n{"answer": "a {b}", "score": 1, "extra": null}\n```') == \
        {"answer": "a {b}", "score": 1.0}
    with pytest.raises(AdapterParseError, match="cannot be serialized to a JSON object"):
        adapter.parse(Scored, "no object here")


def test_json_parse_mismatch_message_is_dspys():
    with pytest.raises(AdapterParseError) as info:
        JSONAdapter().parse(QA, "{'answer1': 'Paris'}")
    assert str(info.value) == (
        "Adapter JSONAdapter failed to parse the LM response. \n\nLM Response: {'answer1': 'Paris'} \n\n"
        "Expected to find output fields in the LM response: [answer] \n\n"
        "Actual output fields parsed from the LM response: [] \n\n")


def test_optional_outputs_take_their_defaults():
    class Optional_(dspex.Signature):
        question: str = dspex.InputField()
        answer: str = dspex.OutputField()
        note: Optional[str] = dspex.OutputField(default="No note")
        maybe: str | None = dspex.OutputField()

    for adapter, text in ((ChatAdapter(), "[[ ## answer ## ]]\n42"), (JSONAdapter(), '{"answer": "42"}'),
                          (XMLAdapter(), "<answer>42</answer>")):
        assert adapter.parse(Optional_, text) == {"answer": "42", "note": "No note", "maybe": None}
    assert apply_output_field_defaults(Optional_, {}) == {"note": "No note", "maybe": None}


def test_parse_value_rules():
    class Color(enum.Enum):
        RED = "red"

    assert parse_value(123, str) == "123"
    assert parse_value("'b'", Literal["a", "b"]) == "b"
    assert parse_value("Literal[a]", Literal["a", "b"]) == "a"
    assert parse_value("B", Literal["a", "b"]) == "b"  # dspex: case-tolerant (DSPy raises)
    assert parse_value("RED", Color) is Color.RED and parse_value("red", Color) is Color.RED
    assert parse_value("text [x]", Optional[str]) == "text [x]"
    assert parse_value("5", int | None) == 5
    assert parse_value("{'a': true, 'b': null}", dict) == {"a": True, "b": None}
    assert parse_value("True", bool) is True
    with pytest.raises(ValueError):
        parse_value("maybe", Literal["a", "b"])
    with pytest.raises(pydantic.ValidationError):
        parse_value("not json", dict)


def test_translate_field_type_for_inputs_is_just_the_placeholder():
    assert translate_field_type("score", Scored.output_fields["score"]) == \
        "{score}        # note: the value you produce must be a single float value"
    assert translate_field_type("question", Scored.input_fields["question"]) == "{question}"


# --- adapter(lm, ...) ----------------------------------------------------------------------------------------

def test_call_formats_calls_and_parses_each_output():
    lm = ScriptedLM("[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]")
    assert ChatAdapter()(lm, {"temperature": 0.5}, QA, [], {"question": "Capital?"}) == [{"answer": "Paris"}]
    assert lm.calls[0]["kwargs"] == {"temperature": 0.5}
    assert lm.calls[0]["messages"][-1]["content"].startswith("[[ ## question ## ]]\nCapital?")


def test_acall_and_dict_outputs():
    lm = ScriptedLM({"text": "[[ ## answer ## ]]\nParis", "logprobs": None})
    assert asyncio.run(ChatAdapter().acall(lm, {}, QA, [], {"question": "Capital?"})) == [{"answer": "Paris"}]


def test_tool_kwargs_are_dropped_without_native_function_calling():
    lm = ScriptedLM("[[ ## answer ## ]]\nok")
    ChatAdapter()(lm, {"tools": [1], "tool_choice": "auto", "parallel_tool_calls": True, "n": 1}, QA, [],
                  {"question": "q"})
    assert lm.calls[0]["kwargs"] == {"n": 1}


def test_empty_answer_is_a_parse_error():
    with pytest.raises(AdapterParseError, match="empty or null response"):
        ChatAdapter(use_json_adapter_fallback=False)(ScriptedLM(""), {}, QA, [], {"question": "q"})


def test_chat_falls_back_to_json_once():
    lm = ScriptedLM("{'answer': 'Paris'}", "{'answer': 'Paris'}")
    assert ChatAdapter()(lm, {}, QA, [], {"question": "q"}) == [{"answer": "Paris"}]
    assert len(lm.calls) == 2 and "Respond with a JSON object" in lm.calls[1]["messages"][-1]["content"]
    lm = ScriptedLM("nonsense")
    with pytest.raises(AdapterParseError):
        ChatAdapter(use_json_adapter_fallback=False)(lm, {}, QA, [], {"question": "q"})
    assert len(lm.calls) == 1


def test_lm_errors_are_not_retried():
    lm = ScriptedLM(LMError("provider down"))
    with pytest.raises(LMError):
        ChatAdapter()(lm, {}, QA, [], {"question": "q"})
    assert len(lm.calls) == 1


def test_json_adapter_asks_for_structured_outputs_when_the_lm_takes_them():
    class SchemaLM(ScriptedLM):
        supports_response_schema = True

    lm = SchemaLM('{"answer": "x"}', supported_params=("response_format",))
    assert JSONAdapter()(lm, {}, QA, [], {"question": "q"}) == [{"answer": "x"}]
    model = lm.calls[0]["kwargs"]["response_format"]
    assert issubclass(model, pydantic.BaseModel) and model.model_json_schema()["additionalProperties"] is False
    lm = ScriptedLM('{"answer": "x"}', supported_params=("response_format",))  # no schema support: JSON mode
    JSONAdapter()(lm, {}, QA, [], {"question": "q"})
    assert lm.calls[0]["kwargs"]["response_format"] == {"type": "json_object"}
    lm = ScriptedLM('{"answer": "x"}')  # no response_format at all
    JSONAdapter()(lm, {}, QA, [], {"question": "q"})
    assert "response_format" not in lm.calls[0]["kwargs"]


# --- XMLAdapter -----------------------------------------------------------------------------------------------

def test_xml_prompt_and_round_trip():
    system, user = XMLAdapter().format(Scored, [], {"question": "Q"})
    assert "<question>\n{question}\n</question>\n\n<answer>\n{answer}\n</answer>" in system["content"]
    assert user["content"] == ("<question>\nQ\n</question>\n\nRespond with the corresponding output fields wrapped "
                               "in XML tags `<answer>`, then `<score>`.")
    assert XMLAdapter().parse(Scored, "<answer>a &lt; b</answer>\n<score>0.5</score>") == {"answer": "a < b",
                                                                                           "score": 0.5}


def test_xml_nested_structures():
    class Item(pydantic.BaseModel):
        name: str
        tags: list[str]

    class Items(dspex.Signature):
        q: str = dspex.InputField()
        items: list[Item] = dspex.OutputField()
        counts: dict[str, int] = dspex.OutputField()

    adapter = XMLAdapter()
    values = {"items": [Item(name="a", tags=["x", "y"])], "counts": {"a b": 1, "c": 2}}
    text = adapter.format_assistant_message_content(Items, values)
    assert text == ('<items><item><name>a</name><tags><item>x</item><item>y</item></tags></item></items>\n\n'
                    '<counts><entry key="a b">1</entry><c>2</c></counts>')
    assert adapter.parse(Items, text) == values
    assert "<items><item><name>...</name><tags><item>...</item></tags></item></items>" in \
        adapter.user_message_output_requirements(Items)
    with pytest.raises(AdapterParseError, match="Failed to parse XML"):
        adapter.parse(Items, "<items><item></items>")


# --- TwoStepAdapter -------------------------------------------------------------------------------------------

def test_two_step_prompts_freely_and_extracts_with_a_second_lm():
    extractor = ScriptedLM("[[ ## answer ## ]]\nParis\n[[ ## score ## ]]\n0.5")
    main = ScriptedLM("I think it is Paris, fairly sure.")
    adapter = TwoStepAdapter(extractor)
    assert adapter(main, {}, Scored, [{"question": "Q1", "answer": "A1", "score": 1.0}], {"question": "Q"}) == \
        [{"answer": "Paris", "score": 0.5}]
    messages = main.calls[0]["messages"]
    assert messages[0]["content"].startswith("You are a helpful assistant that can solve tasks based on user input.")
    assert messages[1:] == [{"role": "user", "content": "question: Q1"},
                            {"role": "assistant", "content": "answer: A1\n\nscore: 1.0"},
                            {"role": "user", "content": "question: Q"}]
    assert "I think it is Paris" in extractor.calls[0]["messages"][-1]["content"]


def test_two_step_in_an_async_call_awaits_the_extraction_model_on_the_callers_loop(tmp_path):
    """``await program.acall``: the extraction model's own ``acall`` is awaited on the caller's loop (its
    sync call is never used)."""
    from dspex.utils.dummies import DummyLM

    class AsyncOnly(ScriptedLM):
        def __call__(self, messages=None, **kwargs):
            raise AssertionError("the sync call was used inside an async call")

        async def acall(self, messages=None, **kwargs):
            self.loops.append(asyncio.get_running_loop())
            return ScriptedLM.__call__(self, messages=messages, **kwargs)

    extractor = AsyncOnly("[[ ## answer ## ]]\nParis\n[[ ## score ## ]]\n0.5\n[[ ## completed ## ]]")
    extractor.loops = []
    program = dspex.Predict(Scored)

    async def main():
        with dspex.context(lm=DummyLM([{"answer": "It is Paris, fairly sure."}]), adapter=TwoStepAdapter(extractor)):
            return await program.acall(question="Capital of France?"), asyncio.get_running_loop()

    with dspex.runtime("local", cache_dir=tmp_path, log_level=None):  # (not the process's default runtime)
        result, loop = asyncio.run(main())
    assert (result.answer, result.score) == ("Paris", 0.5)
    assert extractor.loops == [loop]
    assert "It is Paris" in extractor.calls[0]["messages"][-1]["content"]


def test_two_step_parse_failure_and_bad_model():
    adapter = TwoStepAdapter(ScriptedLM("invalid", "still invalid"))
    with pytest.raises(AdapterParseError, match="Failed to parse response"):
        adapter.parse(QA, "text")
    with pytest.raises(dspex.ConfigError):
        TwoStepAdapter("not an lm")


# --- round trips ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter(), XMLAdapter()])
def test_parse_inverts_the_assistant_message(adapter):
    class Many(dspex.Signature):
        q: str = dspex.InputField()
        text: str = dspex.OutputField()
        n: int = dspex.OutputField()
        ok: bool = dspex.OutputField()
        tags: list[str] = dspex.OutputField()
        label: Literal["a", "b"] = dspex.OutputField()

    values = {"text": "multi\nline <x> & y", "n": -3, "ok": False, "tags": ["p", "q r"], "label": "b"}
    assert adapter.parse(Many, adapter.format_assistant_message_content(Many, values)) == values
