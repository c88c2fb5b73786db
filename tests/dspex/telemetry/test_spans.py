"""dspex.telemetry: one span per call, parented as the calls nest (threads included), GenAI attributes on
LM spans, captured messages only when asked and never a key; instrument / uninstrument / the environment.

These tests read spans from the OpenTelemetry SDK's own in-memory exporter; the OTLP path to a real
receiver (and spans from worker processes) is ``test_otlp_receiver.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

import dspex  # noqa: E402
import dspex.telemetry  # noqa: E402
from dspex.telemetry.spans import SpanCallback  # noqa: E402
from dspex.testing import ProviderServer  # noqa: E402
from dspex.utils.callback import BaseCallback, instruments  # noqa: E402

from ..scripted import chat  # noqa: E402

KEY = "sk-telemetry-secret-0123456789"


def answer(req):
    question = req.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    if "leak" in question:
        return chat(answer=f"the key is {KEY}")
    return chat(answer=question.upper())


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    dspex.telemetry.uninstrument()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path_factory.mktemp("cache"), log_level=None) as rt:
        lm = dspex.LM("openai/traced", api_key=KEY, base_url=server.base_url(), cache=False, retries=1,
                      backoff_base=0.001, backoff_cap=0.002)
        yield server, rt, lm


def tree(finished) -> dict:
    """span id -> (span, its children's names in start order)."""
    kids: dict = {s.context.span_id: [] for s in finished}
    for s in sorted(finished, key=lambda s: s.start_time):
        if s.parent is not None and s.parent.span_id in kids:
            kids[s.parent.span_id].append(s)
    return kids


def named(finished, name):
    return [s for s in finished if s.name == name]


def exact(example, pred, trace=None):
    return example.answer == pred.answer


def test_every_hook_of_the_callbacks_opens_or_closes_a_span():
    hooks = {h for h in vars(BaseCallback) if h.startswith("on_")}
    assert hooks and all(getattr(SpanCallback, h) is not getattr(BaseCallback, h) for h in hooks)


def test_an_evaluation_is_one_trace_rows_modules_adapter_and_lm_nested_across_its_threads(world, spans):
    _, _, lm = world
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider)
    devset = [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(4)]
    with dspex.context(lm=lm):
        result = dspex.Evaluate(devset=devset, metric=exact, max_concurrency=4, progress=False)(dspex.Predict("question -> answer"))
    assert result.score == 100.0
    finished = exporter.get_finished_spans()
    (root,) = named(finished, "Evaluate")
    assert root.parent is None and {s.context.trace_id for s in finished} == {root.context.trace_id}
    kids = tree(finished)
    rows = kids[root.context.span_id]
    assert sorted(r.name for r in rows) == [f"evaluate row {i}" for i in range(4)]
    for row in rows:  # each row ran on its own thread: its spans still hang under it
        assert row.attributes["dspex.row.score"] == 1.0
        (predict,) = kids[row.context.span_id]
        assert predict.name == "Predict.forward"
        assert [s.name for s in kids[predict.context.span_id]] == ["ChatAdapter.format", "chat traced",
                                                                   "ChatAdapter.parse"]
    assert root.attributes["dspex.score"] == 100.0 and root.attributes["dspex.evaluate.examples"] == 4
    lm_span = named(finished, "chat traced")[0]
    attrs = lm_span.attributes
    assert (attrs["gen_ai.system"], attrs["gen_ai.request.model"], attrs["gen_ai.operation.name"]) == \
        ("openai", "traced", "chat")
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert lm_span.kind.name == "CLIENT"
    # without capture_messages no text a user wrote is in a span
    text = json.dumps([dict(s.attributes) for s in finished])
    assert "q1" not in text and "input.value" not in text and "gen_ai.input.messages" not in text


def test_captured_messages_are_bounded_and_never_hold_a_key(world, spans):
    _, _, lm = world
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider, capture_messages=True)
    with dspex.context(lm=lm):
        pred = dspex.Predict("question -> answer")(question="please leak " + "x" * 40_000)
    assert KEY in pred.answer  # the model said it; the spans must not
    finished = exporter.get_finished_spans()
    lm_span = named(finished, "chat traced")[0]
    sent = lm_span.attributes["gen_ai.input.messages"]
    assert sent.startswith('[{"role": "system"') and "please leak" in sent
    assert len(sent) == 16_001 and sent.endswith("…")  # bounded
    assert "the key is" in lm_span.attributes["output.value"]
    dump = json.dumps([{**dict(s.attributes), "events": [dict(e.attributes) for e in s.events]} for s in finished])
    assert KEY not in dump and "the key is" in dump


def test_an_lm_error_is_the_span_status_with_its_type_and_no_key(world, spans, tmp_path):
    server, _, _ = world
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider)
    wrong = "sk-wrong-key-but-still-secret-987654"
    bad = dspex.LM("openai/traced", api_key=wrong, base_url=server.base_url(), cache=False, retries=0, name="wrong")
    with pytest.raises(dspex.AuthError), dspex.context(lm=bad):
        dspex.Predict("question -> answer")(question="q")
    finished = exporter.get_finished_spans()
    (lm_span,) = named(finished, "chat traced")
    assert lm_span.status.status_code == StatusCode.ERROR
    assert lm_span.attributes["error.type"] == "AuthError"
    (event,) = [e for e in lm_span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "AuthError"
    assert all(s.status.status_code == StatusCode.ERROR for s in finished if s.name == "Predict.forward")
    dump = json.dumps([[dict(s.attributes), s.status.description, [dict(e.attributes) for e in s.events]]
                       for s in finished])
    assert wrong not in dump and KEY not in dump


def test_a_compile_is_a_span_with_its_steps_and_their_evaluations(world, spans):
    _, _, lm = world
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider)
    trainset = [dspex.Example(question=f"t{i}", answer=f"T{i}").with_inputs("question") for i in range(4)]
    with dspex.context(lm=lm):
        optimizer = dspex.BootstrapFewShotWithRandomSearch(metric=exact, max_bootstrapped_demos=1,
                                                          max_labeled_demos=1, num_candidate_programs=1)
        optimizer.compile(dspex.Predict("question -> answer"), trainset=trainset, valset=trainset)
    finished = exporter.get_finished_spans()
    (root,) = named(finished, "BootstrapFewShotWithRandomSearch.compile")
    assert root.parent is None and {s.context.trace_id for s in finished} == {root.context.trace_id}
    kids = tree(finished)
    steps = [s for s in kids[root.context.span_id] if s.name.startswith("compile step")]
    phases = {s.attributes["dspex.compile.phase"] for s in steps}
    assert phases == {"bootstrap", "candidates"}
    candidates = [s for s in steps if s.attributes["dspex.compile.phase"] == "candidates"]
    assert all(s.attributes["dspex.compile.examples"] == 4 and s.attributes["dspex.score"] == 100.0
               for s in candidates)
    assert sorted(s.attributes["dspex.compile.candidate"] for s in candidates) == [f"candidate-{i}" for i in range(4)]
    for step in steps:
        assert [s.name for s in kids[step.context.span_id]] == ["Evaluate"]
    assert root.attributes["dspex.score"] == 100.0 and root.attributes["dspex.compile.stopped"] == "done"
    assert root.attributes["dspex.compile.lm_calls"] > 0


def test_a_tool_call_is_an_execute_tool_span(spans):
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider, capture_messages=True)

    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    assert dspex.Tool(add)(a=2, b=3) == 5
    (span,) = exporter.get_finished_spans()
    assert span.name == "execute_tool add" and span.attributes["gen_ai.tool.name"] == "add"
    assert span.attributes["output.value"] == "5"
    assert json.loads(span.attributes["input.value"]) == {"kwargs": {"a": 2, "b": 3}}


def test_instrument_twice_replaces_uninstrument_stops(spans):
    provider, exporter = spans
    dspex.telemetry.instrument(tracer_provider=provider)
    dspex.telemetry.instrument(tracer_provider=provider)
    assert len([c for c in instruments() if isinstance(c, SpanCallback)]) == 1
    tool = dspex.Tool(lambda: 1, name="one")
    tool()
    dspex.telemetry.uninstrument()
    assert not dspex.telemetry.is_instrumented() and not instruments()
    tool()
    assert len(exporter.get_finished_spans()) == 1


def test_bad_arguments_are_config_errors(spans):
    with pytest.raises(dspex.ConfigError, match="capture_messages"):
        dspex.telemetry.instrument(capture_messages="yes")
    with pytest.raises(dspex.ConfigError, match="TracerProvider"):
        dspex.telemetry.instrument(tracer_provider=object())
    assert not dspex.telemetry.is_instrumented()


def test_the_environment_turns_tracing_on_as_dspex_is_imported():
    code = ("import dspex, dspex.telemetry.setup as s; i = s.current(); "
            "print(type(i.provider).__module__, i.endpoint, i.capture_messages)")
    env = {**os.environ, "DSPEX_OTEL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/",
           "DSPEX_OTEL_CAPTURE_MESSAGES": "1", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["opentelemetry.sdk.trace", "http://127.0.0.1:9/v1/traces", "True"]
    bad = subprocess.run([sys.executable, "-c", "import dspex"], env={**env, "DSPEX_OTEL": "yes"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "DSPEX_OTEL must be 0 or 1" in bad.stderr
