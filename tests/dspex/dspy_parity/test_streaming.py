"""Streaming and usage as DSPy users write them: dspy.streamify with StreamListener over the providers'
real server-sent events (the simulator streams as each provider does), and Prediction.get_lm_usage()."""

from __future__ import annotations

import asyncio
import time

import pytest

import dspex as dspy
from dspex.testing import Faults, ProviderServer

from ..scripted import TwoStep, chat

KEY = "sk-test-streaming-123456"
ANSWER = "Paris is the capital of France and its largest city by far"


def answer(req) -> str:
    if "draft" in req.last_user:
        return chat(answer="polished " + ANSWER)
    return chat(reasoning="The question asks for a capital.", answer=ANSWER)


@pytest.fixture
def server():
    with ProviderServer(answer=answer, api_key=KEY, stream_delay=0.01) as sim:
        yield sim


@pytest.fixture
def runtime(tmp_path):
    with dspy.runtime("local", cache_dir=tmp_path / "cache", log_level="warning") as rt:
        yield rt


async def collect(stream):
    chunks, final, first_at = [], None, None
    async for item in stream:
        if isinstance(item, dspy.streaming.StreamResponse):
            first_at = first_at or time.monotonic()
            chunks.append(item)
        else:
            final = item
    return chunks, final, first_at


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_streamify_streams_the_field_as_the_provider_writes_it(server, runtime, provider):
    lm = dspy.LM(f"{provider}/m", api_key=KEY, base_url=server.base_url(provider), cache=False)
    program = dspy.ChainOfThought("question -> answer", lm=lm)
    stream = dspy.streamify(program, stream_listeners=[dspy.streaming.StreamListener(signature_field_name="answer")])
    started = time.monotonic()
    chunks, final, first_at = asyncio.run(collect(stream(question="Capital of France?")))
    done = time.monotonic()
    assert final.answer == ANSWER
    assert "".join(c.chunk for c in chunks) == ANSWER  # the field only: no markers, no reasoning
    assert len(chunks) > 3 and chunks[-1].is_last_chunk and not any(c.is_last_chunk for c in chunks[:-1])
    assert {(c.predict_name, c.signature_field_name) for c in chunks} == {("predict", "answer")}  # DSPy's name
    assert first_at - started < (done - started) * 0.8  # the first piece came well before the end
    assert server.log[-1].body.get("stream") is True or "streamGenerateContent" in server.log[-1].path
    assert lm.usage().prompt_tokens == server.log[-1].prompt_tokens  # the ledger counted the streamed call


def test_a_listener_follows_one_predictor_of_a_module_and_a_sync_stream_works(server, runtime):
    lm = dspy.LM("openai/m", api_key=KEY, base_url=server.base_url(), cache=False)
    module = TwoStep(lm)
    stream = dspy.streamify(module, stream_listeners=[dspy.StreamListener("answer", predict=module.polish)],
                            async_streaming=False)
    items = list(stream(question="Capital of France?"))
    chunks, final = items[:-1], items[-1]
    assert final.answer == "polished " + ANSWER
    assert "".join(c.chunk for c in chunks) == "polished " + ANSWER
    assert {c.predict_name for c in chunks} == {"polish"}


def test_a_cached_answer_streams_as_one_chunk_and_a_retried_attempt_starts_over(tmp_path):
    faults = Faults(schedule=["ok", "truncate"])  # the second request's stream is cut half way, then retried
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as sim, \
            dspy.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspy.LM("openai/m", api_key=KEY, base_url=sim.base_url())
        program = dspy.Predict("question -> answer", lm=lm)
        listen = [dspy.StreamListener("answer")]
        run = dspy.streamify(program, stream_listeners=listen, async_streaming=False)
        first = [c for c in run(question="q1") if isinstance(c, dspy.StreamResponse)]
        again = [c for c in run(question="q1") if isinstance(c, dspy.StreamResponse)]  # from the cache
        assert "".join(c.chunk for c in first) == "".join(c.chunk for c in again) == ANSWER
        assert len(again) == 2 and len(sim.log) == 1  # the whole field, then the last-chunk marker
        retried = [c for c in run(question="q2") if isinstance(c, dspy.StreamResponse)]
        assert "".join(c.chunk for c in retried) == ANSWER  # the cut attempt's pieces were taken back
        assert [r.status for r in sim.log] == [200, 200, 200] and sim.log[1].fault == "truncate"
        assert lm.status().totals.retries == 1


def test_streamify_refuses_what_it_does_not_take(runtime):
    program = dspy.Predict("question -> answer")
    with pytest.raises(dspy.ConfigError, match="StreamListener"):
        dspy.streamify(program, stream_listeners=["answer"])
    with pytest.raises(dspy.ConfigError, match="not part of the program"):
        dspy.streamify(program, stream_listeners=[dspy.StreamListener("answer", predict=dspy.Predict("a -> b"))])
    with pytest.raises(dspy.ConfigError, match="does not take"):
        dspy.streamify(program, status_message_provider=object())


def test_get_lm_usage_counts_every_call_by_model(server, runtime):
    lm = dspy.LM("openai/m", api_key=KEY, base_url=server.base_url(), cache=False)
    pred = TwoStep(lm)(question="Capital of France?")
    usage = pred.get_lm_usage()
    assert set(usage) == {"openai/m"}
    assert usage["openai/m"]["prompt_tokens"] == sum(r.prompt_tokens for r in server.log)
    assert usage["openai/m"]["completion_tokens"] == sum(r.completion_tokens for r in server.log)
    assert usage["openai/m"]["total_tokens"] == pred.usage.total_tokens


def test_a_garbled_stream_is_a_typed_error_after_its_retries(tmp_path):
    faults = Faults(error_rates={}, malformed_rate=1.0)  # every stream breaks off into a non-JSON event
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as sim, \
            dspy.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspy.LM("openai/m", api_key=KEY, base_url=sim.base_url(), cache=False, num_retries=1, rpm=None)
        run = dspy.streamify(dspy.Predict("question -> answer", lm=lm), stream_listeners=[dspy.StreamListener("answer")],
                             async_streaming=False)
        with pytest.raises(dspy.MalformedResponse, match="not JSON"):
            list(run(question="q"))
        assert len(sim.log) == 2 and KEY not in str(sim.log[-1].headers)
