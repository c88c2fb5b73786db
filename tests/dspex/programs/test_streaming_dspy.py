"""dspex.streaming as DSPy users import it: status messages from a StatusMessageProvider, objects a program
sends itself, plain-generator streams, server-sent-event lines."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import anyio.from_thread
import pytest

import dspex as dspy
from dspex.streaming import (StatusMessage, StatusMessageProvider, StreamListener, StreamResponse,
                             apply_sync_streaming, streamify, streaming_response)
from dspex.utils import DummyLM


class AskTool(dspy.Module):
    def __init__(self):
        super().__init__()
        self.make_question = dspy.Tool(lambda x: f"What color is the {x}?", name="make_question")
        self.predict = dspy.Predict("question -> answer")

    def forward(self, x: str):
        return self.predict(question=self.make_question(x=x))


class Loud(StatusMessageProvider):
    def __init__(self, tag: str = ""):
        self.tag = tag

    def tool_start_status_message(self, instance, inputs):
        return f"{self.tag}tool {instance.name} with {inputs}"

    def tool_end_status_message(self, outputs):
        return f"{self.tag}tool said {outputs}"

    def module_start_status_message(self, instance, inputs):
        return f"{self.tag}start {type(instance).__name__}" if isinstance(instance, dspy.Predict) else None

    def lm_end_status_message(self, outputs):
        return f"{self.tag}lm done"


async def collect(stream):
    return [item async for item in stream]


def messages(items):
    return [item.message for item in items if isinstance(item, StatusMessage)]


def test_the_names_import_from_dspex_streaming_as_from_dspy_streaming():
    import dspex.streaming as streaming

    assert dspy.streaming is streaming
    assert streaming.streamify is dspy.streamify and streaming.StreamListener is dspy.StreamListener
    assert StreamResponse("p", "answer", "x").is_last_chunk is False


def test_the_default_provider_reports_tool_calls_and_the_prediction_comes_last():
    with dspy.context(lm=DummyLM([{"answer": "red"}])):
        items = asyncio.run(collect(streamify(AskTool())("sky")))
    assert messages(items) == ["Calling tool make_question...",
                               "Tool calling finished! Querying the LLM with tool calling results..."]
    assert isinstance(items[-1], dspy.Prediction) and items[-1].answer == "red"


def test_a_custom_provider_chooses_the_messages_and_the_callbacks_setting_is_left_alone():
    before = list(dspy.settings.callbacks)
    with dspy.context(lm=DummyLM([{"answer": "red"}])):
        items = asyncio.run(collect(streamify(AskTool(), status_message_provider=Loud())("sky")))
    assert messages(items) == ["tool make_question with {'kwargs': {'x': 'sky'}}", "tool said What color is the sky?",
                               "start Predict", "lm done"]
    assert dspy.settings.callbacks == before


def test_concurrent_streams_each_get_their_own_messages():
    async def both():
        lm = DummyLM([{"answer": "red"}, {"answer": "blue"}])
        with dspy.context(lm=lm):
            return await asyncio.gather(collect(streamify(AskTool(), status_message_provider=Loud("1:"))("sky")),
                                        collect(streamify(AskTool(), status_message_provider=Loud("2:"))("sea")))

    one, two = asyncio.run(both())
    assert messages(one)[0] == "1:tool make_question with {'kwargs': {'x': 'sky'}}" and len(messages(one)) == 4
    assert messages(two)[0] == "2:tool make_question with {'kwargs': {'x': 'sea'}}" and len(messages(two)) == 4
    assert all(m.startswith("1:") for m in messages(one)) and all(m.startswith("2:") for m in messages(two))


def test_a_message_arrives_when_it_happens_not_when_the_call_ends():
    def slow():
        time.sleep(0.5)
        return "done"

    class Slow(dspy.Module):
        def forward(self, question):
            dspy.Tool(slow)()
            return dspy.Prediction(answer="ok")

    async def stamped():
        return [(item, time.monotonic()) async for item in streamify(Slow())(question="q")]

    stamps = [at for item, at in asyncio.run(stamped()) if isinstance(item, StatusMessage)]
    assert len(stamps) == 2 and stamps[1] - stamps[0] >= 0.45


def test_an_async_program_streams_its_messages():
    class Async(dspy.Module):
        def __init__(self):
            super().__init__()
            self.predict = dspy.Predict("question -> answer")

        async def aforward(self, question):
            return await self.predict.acall(question=question)

    with dspy.context(lm=DummyLM([{"answer": "red"}])):
        items = asyncio.run(collect(streamify(Async(), status_message_provider=Loud(), is_async_program=True)(
            question="q")))
    assert messages(items) == ["start Predict", "lm done"] and items[-1].answer == "red"


def test_a_program_sends_its_own_objects_through_the_stream():
    @dataclass
    class Custom:
        text: str

    class Sender(dspy.Module):
        def forward(self, question):
            async def send():
                await dspy.settings.send_stream.send(Custom("hello"))

            anyio.from_thread.run(send)
            return dspy.Prediction(answer="out")

    items = asyncio.run(collect(streamify(Sender())(question="q")))
    assert items[0] == Custom("hello") and isinstance(items[1], dspy.Prediction)
    assert dspy.settings.send_stream is None  # only inside the streamed call


def test_sync_streams_give_the_same_items_and_raise_the_programs_error():
    with dspy.context(lm=DummyLM([{"answer": "red"}, {"answer": "blue"}])):
        sync = list(streamify(AskTool(), async_streaming=False)("sky"))
        applied = list(apply_sync_streaming(streamify(AskTool())("sky")))
    assert len(messages(sync)) == len(messages(applied)) == 2
    assert sync[-1].answer == "red" and applied[-1].answer == "blue"

    class Broken(dspy.Module):
        def forward(self, question):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(streamify(Broken(), async_streaming=False)(question="q"))


def test_a_listener_on_a_non_streaming_lm_gets_the_whole_field_and_the_prediction_is_kept():
    program = dspy.Predict("question -> answer")
    with dspy.context(lm=DummyLM([{"answer": "red"}])):
        items = asyncio.run(collect(streamify(program, stream_listeners=[StreamListener("answer")],
                                              include_final_prediction_in_output_stream=False)(question="q")))
    chunks = [item for item in items if isinstance(item, StreamResponse)]
    assert [c.chunk for c in chunks] == ["red", ""] and chunks[-1].is_last_chunk  # one piece: not streamed
    assert isinstance(items[-1], dspy.Prediction)  # the whole value in one piece: the Prediction stays


def test_streaming_response_writes_server_sent_events():
    with dspy.context(lm=DummyLM([{"answer": "red"}])):
        program = streamify(dspy.Predict("question -> answer"), stream_listeners=[StreamListener("answer")],
                            status_message_provider=Loud())

        async def lines():
            return [line async for line in streaming_response(program(question="q"))]

        out = asyncio.run(lines())
    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in out)
    assert out[-1] == "data: [DONE]\n\n"
    assert 'data: {"prediction":{"answer":"red"}}\n\n' in out
    events = [json.loads(line[6:]) for line in out[:-1]]
    assert {"status_message": "start Predict"} in events
    chunks = [event["chunk"] for event in events if "chunk" in event]
    assert [(c["signature_field_name"], c["chunk"], c["is_last_chunk"]) for c in chunks] == [
        ("answer", "red", False), ("answer", "", True)]

    async def bad():
        async def gen():
            yield 42

        return [line async for line in streaming_response(gen())]

    with pytest.raises(ValueError, match="int"):
        asyncio.run(bad())


def test_streamify_checks_its_provider():
    with pytest.raises(dspy.ConfigError, match="StatusMessageProvider"):
        streamify(dspy.Predict("q -> a"), status_message_provider=object())


@pytest.mark.parametrize("adapter, field, could, could_not", [
    ("ChatAdapter", "answer", ["x [", "x [[", "x [[ ", "x [[ #", "x [[ ##", "x [[ ## com", "x [[ ## completed"],
     ["hello world", "answer: hello"]),
    ("JSONAdapter", "output", ['x "', 'x ",', 'x " ', 'x "}'], ["hello world", "some text"]),
    ("XMLAdapter", "result", ["x <", "x </", "x </result", "x </res"], ["hello world", "a < b"]),
])
def test_a_listener_knows_what_could_become_a_fields_end(adapter, field, could, could_not):
    listener = StreamListener(field)
    assert all(listener._could_form_end_identifier(text, adapter) for text in could)
    assert not any(listener._could_form_end_identifier(text, adapter) for text in could_not)
