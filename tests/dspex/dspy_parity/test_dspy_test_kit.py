"""What a DSPy user's own unit tests lean on: the settings object and its reset, the cache switches,
``BaseLM`` subclasses, ``DummyLM``'s three modes, DSPy's module walk and mutable Examples; all with
``import dspex as dspy``, written from DSPy's documented behaviour."""

from __future__ import annotations

import copy

import pytest

import dspex as dspy
from dspex.dsp.utils.settings import DEFAULT_CONFIG
from dspex.primitives.module import set_attribute_by_name
from dspex.utils.dummies import DummyLM, DummyVectorizer, dummy_rm


@pytest.fixture
def rt(tmp_path):
    with dspy.runtime("local", cache_dir=tmp_path, log_level=None) as runtime:
        yield runtime


class EchoLM(dspy.BaseLM):
    """A user's own LM: answers the last message back, in the Chat adapter's format."""

    def __init__(self, **kwargs):
        super().__init__("echo-1", **kwargs)
        self.seen = []

    def forward(self, prompt=None, messages=None, **kwargs):
        self.seen.append(kwargs)
        lines = messages[-1]["content"].split("\n")
        question = lines[1] if len(lines) > 1 else lines[0]
        return {"choices": [{"message": {"content": f"[[ ## answer ## ]]\n{question}!"}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3}, "model": "echo-1"}


def test_settings_object_reads_configure_and_context_and_resets_to_the_defaults(rt):
    lm = DummyLM([{"answer": "x"}])
    dspy.configure(lm=lm, num_threads=3)
    assert dspy.settings.lm is lm and dspy.settings["num_threads"] == 3 and dspy.settings.get("max_errors") == 10
    with dspy.settings.context(num_threads=5):
        assert dspy.settings.num_threads == 5
    assert dspy.settings.num_threads == 3 and dspy.settings.config["lm"] is lm
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG), inherit_config=False)  # what DSPy's conftest does per test
    assert dspy.settings.lm is None and dspy.settings.num_threads == 8 and rt.defaults == {}
    with pytest.raises(AttributeError, match="no setting"):
        _ = dspy.settings.no_such_thing
    with pytest.raises(dspy.ConfigError, match="send_stream"):
        dspy.configure(send_stream=object())


def test_configure_cache_switches_the_runtime_cache_in_place(rt):
    lm = dspy.LM("openai/m", api_base="http://127.0.0.1:9/v1", api_key="sk-never-sent-1234567")
    cache = rt.engines.response_cache()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    assert cache.disk is None and cache.memory is not None and dspy.cache.enable_disk_cache is False
    dspy.cache.put({"model": "m", "messages": "hi"}, {"text": "hello"})
    assert dspy.cache.get({"model": "m", "messages": "hi"}) == {"text": "hello"}
    dspy.cache.reset_memory_cache()
    assert dspy.cache.get({"model": "m", "messages": "hi"}) is None
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    assert not cache.enabled and lm.config.cache  # nothing is cached although the handle asks for it
    with pytest.raises(dspy.ConfigError, match="JSON-able"):
        dspy.cache.put({"a": 1}, object())
    with pytest.raises(dspy.ConfigError, match="no size limit"):
        dspy.configure_cache(disk_size_limit_bytes=10)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True)
    assert cache.disk is not None


def test_a_users_base_lm_runs_through_the_client_pipeline_and_ledger(rt):
    lm = EchoLM(temperature=0.3)
    assert (lm.model, lm.model_type, lm.cache, lm.kwargs) == ("echo-1", "chat", True,
                                                             {"temperature": 0.3, "max_tokens": 1000})
    assert lm("hello") == ["[[ ## answer ## ]]\nhello!"]  # a prompt is one user message
    qa = dspy.Predict("question -> answer", lm=lm)
    assert qa(question="why").answer == "why!"
    assert lm.seen[-1]["temperature"] == 0.3 and len(lm.history) == 2
    assert lm.history[-1]["messages"][-1]["role"] == "user" and lm.history[-1]["usage"]["prompt_tokens"] == 7
    totals = lm.usage()
    assert (totals.requests, totals.ok, totals.prompt_tokens, totals.completion_tokens, totals.cost) == (2, 2, 14, 6, 0.0)
    assert lm.dump_state()["_dspy_lm_class"].endswith("EchoLM") and "api_key" not in lm.dump_state()
    hotter = lm.copy(temperature=0.9)
    assert hotter.kwargs["temperature"] == 0.9 and lm.kwargs["temperature"] == 0.3 and hotter.history == []
    with pytest.raises(dspy.ConfigError, match="BaseLM"):
        dspy.LM("python/x")


def test_a_base_lm_without_forward_and_a_forward_that_raises():
    class NoForward(dspy.BaseLM):
        pass

    class Broken(dspy.BaseLM):
        def forward(self, prompt=None, messages=None, **kwargs):
            raise ValueError("context window exceeded")

    with dspy.runtime("local", log_level=None):
        with pytest.raises(NotImplementedError, match="must implement forward"):
            NoForward("n")("hi")
        broken = Broken("b")
        with pytest.raises(ValueError, match="context window"):  # the user's exception, unchanged
            broken("hi")
        usage = broken.usage()  # booked as unconfirmed at its maximum: the ledger never reports less than billed
        assert (usage.ok, usage.failed, usage.unconfirmed_calls) == (0, 1, 1)


def test_dummy_lm_list_dict_and_follow_examples_modes(rt):
    qa = dspy.Predict("question -> answer")
    dspy.configure(lm=DummyLM([{"answer": "red"}, {"answer": "blue"}]))
    assert [qa(question="sky?").answer for _ in range(3)] == ["red", "blue", "No more responses"]
    dspy.configure(lm=DummyLM({"capital of France": {"answer": "Paris"}}))
    assert qa(question="What is the capital of France?").answer == "Paris"
    lm = DummyLM([{"answer": "unused"}], follow_examples=True)
    qa.demos = [dspy.Example(question="sky?", answer="blue")]
    assert qa(question="sky?", lm=lm).answer == "blue"
    messages, outputs = lm.get_convo(-1)
    assert messages[-1]["content"].startswith("[[ ## question ## ]]") and "blue" in outputs[0]
    assert DummyLM([{"answer": "a"}], reasoning=True).forward(prompt="x").choices[0].message.reasoning_content


def test_dummy_vectorizer_and_rm_rank_similar_text_first():
    vectors = DummyVectorizer()(["the cat sat", "the cat sat down", "quantum physics"])
    assert vectors.shape == (3, 100) and abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-5
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    rm = dummy_rm(["apples are red", "the sky is blue", "grass is green"])
    assert rm("what color is the sky", k=1)[0].long_text == "the sky is blue"
    with pytest.raises(dspy.ConfigError, match="only 3 passages"):
        rm("x", k=4)


class Hop(dspy.Module):
    def __init__(self):
        super().__init__()
        self.first = dspy.Predict("question -> query")
        self.steps = [dspy.Predict("query -> answer"), {"key": dspy.Predict("answer -> score")}]


def test_module_walk_names_as_dspy():
    hop = Hop()
    assert hop._compiled is False
    assert [n for n, _ in hop.named_sub_modules()] == ["self", "self.first", "self.steps[0]", "self.steps[1][key]"]
    assert [n for n, _ in hop.named_parameters()] == ["first", "steps[0]", "steps[1]['key']"]
    assert hop.parameters() == hop.predictors() and len(hop.parameters()) == 3
    assert [n for n, _ in dspy.Predict("a -> b").named_parameters()] == ["self"]
    hop.map_named_predictors(lambda p: dspy.ChainOfThought(p.signature))
    assert all(isinstance(m, dspy.ChainOfThought) for m in (hop.first, hop.steps[0], hop.steps[1]["key"]))
    set_attribute_by_name(hop, "steps[1]['key'].note", 1)
    assert hop.steps[1]["key"].note == 1
    with pytest.raises(dspy.ConfigError, match="settable"):
        set_attribute_by_name(hop, "missing.attr", 1)
    lm = DummyLM([{}])
    hop.set_lm(lm)
    assert hop.get_lm() is lm
    hop.first.lm = DummyLM([{}])
    with pytest.raises(dspy.ConfigError, match="Multiple LMs"):
        hop.get_lm()


def test_a_run_works_on_copies_so_a_users_examples_never_change(rt):
    devset = [dspy.Example(question=f"q{i}", answer="red").with_inputs("question") for i in range(3)]

    def metric(example, prediction):
        example.seen = True  # a metric that writes on its example changes the run's copy only
        return prediction.answer == example.answer

    qa = dspy.Predict("question -> answer", lm=DummyLM({"q": {"answer": "red"}}))
    result = dspy.Evaluate(devset=devset, metric=metric, num_threads=2, display_progress=False)(qa)
    assert result.score > 0 and all("seen" not in ex for ex in devset)


def test_majority_votes_on_the_normalized_last_field():
    pred = dspy.Prediction.from_completions([{"answer": "Paris."}, {"answer": "Lyon"}, {"answer": "the paris"}])
    assert dspy.predict.majority(pred).answer == "Paris."
    assert dspy.predict.majority([{"a": "x", "b": "1"}, {"a": "y", "b": "2"}], field="a").a == "x"


def test_track_usage_counts_the_answers_given_inside_the_block_per_model(rt):
    lm = EchoLM()
    with dspy.track_usage() as tracker:
        dspy.Predict("question -> answer", lm=lm)(question="a")
        with dspy.track_usage() as inner:
            lm("b")
    lm("c")  # after the block: not counted
    totals = tracker.get_total_tokens()["python/echo-1"]
    assert (totals["calls"], totals["prompt_tokens"], totals["completion_tokens"], totals["total_tokens"]) == (2, 14, 6, 20)
    assert inner.get_total_tokens()["python/echo-1"]["calls"] == 1


def test_logging_switches(capsys):
    import structlog

    dspy.disable_logging()
    structlog.get_logger("dspex").warning("hidden_event")
    dspy.enable_logging()
    structlog.get_logger("dspex").warning("shown_event")
    err = capsys.readouterr().err
    assert "shown_event" in err and "hidden_event" not in err
    dspy.disable_litellm_logging()  # nothing to turn off: dspex does not use litellm
    with pytest.raises(dspy.ConfigError, match="does not use litellm"):
        dspy.enable_litellm_logging()


def test_embedder_takes_a_callable_and_dspy_argument_names(rt):
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return DummyVectorizer()(texts)

    embedder = dspy.Embedder(embed, batch_size=2)
    vectors = embedder(["a cat", "a dog", "a car"])
    assert len(vectors) == 3 and len(vectors[0]) == 100 and calls == [["a cat", "a dog"], ["a car"]]
    assert len(embedder("one")) == 100  # one string, one vector
    with pytest.raises(dspy.ConfigError, match="base_url= or api_base="):
        dspy.Embedder("openai/e", base_url="http://127.0.0.1:1/v1", api_base="http://127.0.0.1:2/v1")
    with pytest.raises(dspy.ConfigError, match="2 vectors for 3 texts"):
        dspy.Embedder(lambda texts: [[0.0], [1.0]])(["a", "b", "c"])


def test_a_base_lm_subclass_that_overrides_call_sees_every_request(rt):
    class Slow(DummyLM):  # DSPy's pattern: wrap __call__, then let the base answer
        def __call__(self, *args, **kwargs):
            self.seen_calls = getattr(self, "seen_calls", 0) + 1
            return super().__call__(*args, **kwargs)

    class Canned(dspy.BaseLM):  # answers in __call__ itself, never reaching forward
        def __call__(self, prompt=None, messages=None, **kwargs):
            return ["[[ ## answer ## ]]\ncanned"]

    slow = Slow([{"answer": "x"}])
    assert dspy.Predict("question -> answer", lm=slow)(question="q").answer == "x"
    assert slow.seen_calls == 1 and slow.usage().ok == 1 and len(slow.history) == 1  # through the pipeline
    canned = Canned("c")
    assert dspy.Predict("question -> answer", lm=canned)(question="q").answer == "canned"
    assert canned.usage().requests == 0  # it never reached the client
