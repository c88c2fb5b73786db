"""dspex.Parallel: (module, example) pairs on threads, with a real program against the provider simulator."""

from __future__ import annotations

import re
import threading

import pytest

import dspex
from dspex.programs.parallel import Parallel
from dspex.testing import ProviderServer
from dspex.utils.parallelizer import CANCELLED_MESSAGE, ExecutionCancelled

from ..scripted import chat

KEY = "sk-test-parallel-123456"


def echo(req):
    """Answer each question with its own text (so a result shows which request it answered)."""
    question = re.findall(r"\[\[ ## question ## \]\]\n(.*?)\n", req.last_user)
    return chat(answer=f"answer to {question[-1] if question else '?'}")


@pytest.fixture
def server():
    with ProviderServer(answer=echo, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def lm(server, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        yield dspex.LM("openai/sim", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False)


class Double(dspex.Module):
    def forward(self, value):
        if value == 42:
            raise ValueError("not 42")
        return value * 2


def test_a_real_program_over_examples_and_dicts_in_order(lm, server):
    qa = dspex.Predict("question -> answer")  # no LM of its own: the one of the caller's context
    questions = [f"q{i}" for i in range(8)]
    pairs = [(qa, dspex.Example(question=q, gold="x").with_inputs("question")) for q in questions[:4]]
    pairs += [(qa, {"question": q}) for q in questions[4:]]
    with dspex.context(lm=lm):
        results = Parallel(num_threads=4, disable_progress_bar=True)(pairs)
    assert [r.answer for r in results] == [f"answer to {q}" for q in questions]
    assert all(r.usage.total_tokens > 0 and len(r.trace) == 1 for r in results)  # each its own call
    assert len(server.successes()) == 8


def test_awaited_it_gives_the_same_results(lm):
    import asyncio

    qa = dspex.Predict("question -> answer")
    pairs = [(qa, {"question": f"q{i}"}) for i in range(6)]
    with dspex.context(lm=lm):
        results = asyncio.run(Parallel(num_threads=3, disable_progress_bar=True).acall(pairs))
    assert [r.answer for r in results] == [f"answer to q{i}" for i in range(6)]


def test_inside_a_program_every_pair_joins_its_trace(lm):
    class Fanout(dspex.Module):
        def __init__(self):
            self.first = dspex.Predict("question -> answer")
            self.second = dspex.Predict("question -> answer")
            self.parallel = Parallel(num_threads=3, disable_progress_bar=True)

        def forward(self, question):
            results = self.parallel([(self.first, {"question": f"{question} a"}),
                                     (self.second, {"question": f"{question} b"}),
                                     (self.first, {"question": f"{question} c"})])
            return results[-1]

    with dspex.context(lm=lm):
        out = Fanout()(question="why")
    assert out.answer == "answer to why c"
    assert sorted(s.predictor for s in out.trace) == ["first", "first", "second"]
    assert out.usage.total_tokens == sum(s.usage.total_tokens for s in out.trace)


def test_nested_parallel_and_positional_examples(lm):
    qa = dspex.Predict("question -> answer", lm=lm)
    inner = Parallel(num_threads=2, disable_progress_bar=True)
    outer = Parallel(num_threads=2, disable_progress_bar=True)
    results = outer([(qa, {"question": "top"}),
                     (inner, [(qa, {"question": "in1"}), (qa, {"question": "in2"})]),
                     (lambda a, b: a + b, (1, 2))])
    assert results[0].answer == "answer to top"
    assert [r.answer for r in results[1]] == ["answer to in1", "answer to in2"]
    assert results[2] == 3


def test_access_examples_false_passes_the_example_whole():
    seen = []

    def program(example):
        seen.append(example)
        return example.value

    ex = dspex.Example(value=5, label=1).with_inputs("value")
    assert Parallel(access_examples=False, disable_progress_bar=True)([(program, ex)]) == [5]
    assert seen == [ex]


def test_failed_examples_and_their_errors_are_returned():
    examples = [dspex.Example(value=v).with_inputs("value") for v in (1, 42, 3)]
    parallel = Parallel(num_threads=2, return_failed_examples=True, disable_progress_bar=True)
    results, failed, errors = parallel([(Double(), e) for e in examples] + [(Double(), "a string")])
    assert results == [2, None, 6, None]
    assert failed == [examples[1], "a string"]
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "not 42"
    assert isinstance(errors[1], dspex.ExampleError) and isinstance(errors[1], ValueError)
    again = parallel([(Double(), {"value": 1})])
    assert again == ([2], [], [])  # each call starts afresh


def test_max_errors_stops_the_run():
    with pytest.raises(ExecutionCancelled, match=CANCELLED_MESSAGE):
        Parallel(num_threads=2, max_errors=2, disable_progress_bar=True)([(Double(), {"value": 42})] * 20)


def test_defaults_and_settings():
    p = Parallel()
    assert (p.num_threads, p.max_errors, p.timeout, p.straggler_limit) == (8, 10, 120, 3)
    assert (p.access_examples, p.return_failed_examples, p.provide_traceback) == (True, False, None)
    with dspex.context(num_threads=3, max_errors=1):
        p = Parallel(timeout=0, straggler_limit=5)
    assert (p.num_threads, p.max_errors, p.timeout, p.straggler_limit) == (3, 1, 0, 5)
    assert Parallel(num_threads=2, max_errors=0).max_errors == 0


def test_num_threads_per_call_and_the_module_copies():
    threads = set()

    def where(i):
        threads.add(threading.current_thread().name)
        return i

    parallel = Parallel(num_threads=4, disable_progress_bar=True)
    assert parallel([(where, (i,)) for i in range(6)], num_threads=1) == list(range(6))
    assert threads == {threading.current_thread().name}
    assert isinstance(parallel, dspex.Module) and parallel.deepcopy().num_threads == 4
