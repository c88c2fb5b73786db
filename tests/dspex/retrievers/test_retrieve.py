"""dspex.Retrieve: DSPy's retrieval step over the ``rm`` setting (``dspex.configure(rm=...)``) or its own ``rm=``,
with DSPy's ``dummy_rm`` and with an ``Embeddings`` retriever, in a program, and on Evaluate's worker processes."""

from __future__ import annotations

import pytest

import dspex
from dspex.errors import RetrieverNotConfigured
from dspex.programs.settings import with_resolved_lms
from dspex.retrievers import Embeddings, single_query_passage
from dspex.utils import BaseCallback
from dspex.utils.dummies import AttrDict, DummyLM, DummyVectorizer, dummy_rm

FACTS = ["the sky is blue", "grass is green", "apples are red", "bananas are yellow", "snow is white"]


@pytest.fixture
def rt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def test_with_dummy_rm_in_a_context_block():
    retrieve = dspex.Retrieve(k=2)
    with dspex.context(rm=dummy_rm(FACTS)):
        found = retrieve("what color is the sky")
        assert isinstance(found, dspex.Prediction) and found.passages[0] == "the sky is blue"
        assert len(found.passages) == 2 and all(isinstance(p, str) for p in found.passages)
        assert len(retrieve.forward("what color is grass", k=4).passages) == 4
        assert retrieve("what color is grass", k=1).passages == ["grass is green"]
    with pytest.raises(RetrieverNotConfigured):  # the block is over
        retrieve("what color is the sky")


def test_with_an_embeddings_retriever_configured_as_rm(rt):
    dspex.configure(rm=Embeddings(FACTS, DummyVectorizer(), k=5))
    assert isinstance(dspex.settings.rm, Embeddings)
    assert dspex.Retrieve(k=1)("which fruit is yellow").passages == ["bananas are yellow"]
    assert len(dspex.Retrieve()("snow").passages) == 3  # Retrieve's k (DSPy's default 3), not the retriever's
    dspex.configure(rm=None)
    assert dspex.settings.rm is None


def test_an_explicit_rm_wins_over_the_setting():
    mine = Embeddings(["only passage"], DummyVectorizer())
    with dspex.context(rm=dummy_rm(FACTS)):
        assert dspex.Retrieve(k=1, rm=mine)("sky").passages == ["only passage"]
    with pytest.raises(dspex.ConfigError, match="takes a retriever"):
        dspex.Retrieve(rm="colbert")


def test_no_retriever_is_a_typed_error_that_says_what_to_write():
    with pytest.raises(RetrieverNotConfigured, match=r"dspex\.configure\(rm=dspex\.retrievers\.Embeddings\(") as err:
        dspex.Retrieve()("anything")
    assert isinstance(err.value, dspex.ConfigError) and isinstance(err.value, AssertionError)  # DSPy asserts
    with pytest.raises(dspex.ConfigError, match="retriever"):
        dspex.configure(rm=object())
    with pytest.raises(dspex.ConfigError, match="retriever"), dspex.context(rm=42):
        pass


def test_every_passage_shape_a_retriever_may_answer_with():
    shapes = {
        "strings": lambda q, k: ["a", "b"][:k],
        "long_text objects": lambda q, k: [AttrDict(long_text="a"), AttrDict(long_text="b")][:k],
        "long_text dicts": lambda q, k: [{"long_text": "a", "score": 1}, {"long_text": "b"}][:k],
        "a prediction": lambda q, k: dspex.Prediction(passages=["a", "b"][:k], indices=[0, 1][:k]),
        "one passage": lambda q, k: "a",
    }
    for name, rm in shapes.items():
        expected = ["a"] if name == "one passage" else ["a", "b"]
        assert dspex.Retrieve(k=2, rm=lambda q, k=3, rm=rm: rm(q, k))("q").passages == expected, name
    with pytest.raises(dspex.ConfigError, match="answered with a int passage"):
        dspex.Retrieve(rm=lambda q, k: [1, 2])("q")


def test_extra_arguments_reach_the_retriever_and_state_is_k():
    seen = {}

    def rm(query, k, **kwargs):
        seen.update(query=query, k=k, **kwargs)
        return FACTS[:k]

    retrieve = dspex.Retrieve(k=4, rm=rm)
    assert retrieve("q", by_user_id=7).passages == FACTS[:4] and seen == {"query": "q", "k": 4, "by_user_id": 7}
    assert retrieve.dump_state() == {"k": 4}
    assert retrieve.load_state({"k": 2}).k == 2 and len(retrieve("q").passages) == 2
    assert (retrieve.name, retrieve.input_variable, len(retrieve.stage)) == ("Search", "query", 16)
    assert single_query_passage([{"long_text": "a", "score": 1}, {"long_text": "b", "score": 2}]) == \
        dspex.Prediction(passages=["a", "b"], score=[1, 2])


class RAG(dspex.Module):
    """DSPy's RAG: retrieve, then answer from the passages."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.retrieve = dspex.Retrieve(k=k)
        self.answer = dspex.ChainOfThought("context, question -> answer")

    def forward(self, question: str) -> dspex.Prediction:
        context = self.retrieve(question).passages
        return dspex.Prediction(context=context, answer=self.answer(context=context, question=question).answer)


def test_a_rag_program_gets_the_passages_into_its_prompt_and_fires_module_callbacks(rt):
    started: list = []

    class Spy(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            started.append(type(instance).__name__)

    lm = DummyLM([{"reasoning": "the passage says so", "answer": "blue"}])
    dspex.configure(lm=lm, rm=dummy_rm(FACTS), callbacks=[Spy()])
    try:
        result = RAG()(question="what color is the sky")
    finally:
        dspex.configure(lm=None, rm=None, callbacks=[])
    assert result.answer == "blue" and result.context[0] == "the sky is blue"
    assert "the sky is blue" in lm.history[-1]["messages"][-1]["content"]
    assert started[:2] == ["RAG", "Retrieve"]
    assert [name for name, _ in RAG().named_predictors()] == ["answer.predict"]  # optimizers leave Retrieve alone


def test_programs_sent_to_worker_processes_carry_the_retriever_in_force():
    program = RAG()
    program.answer.set_lm(DummyLM([{"answer": "x"}]))
    assert with_resolved_lms(program) is program  # nothing in force: nothing to carry
    rm = dummy_rm(FACTS)
    with dspex.context(rm=rm):
        shipped = with_resolved_lms(program)
    assert shipped is not program and shipped.retrieve.rm is rm and program.retrieve.rm is None
    assert shipped.retrieve("snow").passages[0] == "snow is white"  # no setting here: it uses its own


def qa(question: str, answer: str) -> dspex.Example:
    return dspex.Example(question=question, answer=answer).with_inputs("question")


class FirstPassage(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.retrieve = dspex.Retrieve(k=1)

    def forward(self, question: str) -> dspex.Prediction:
        return dspex.Prediction(answer=self.retrieve(question).passages[0])


@pytest.mark.slow
def test_evaluate_on_worker_processes_uses_the_configured_retriever(tmp_path):
    data = [qa("sky", "the sky is blue"), qa("grass", "grass is green"), qa("snow", "snow is white")] * 2
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None):
        dspex.configure(rm=Embeddings(FACTS, DummyVectorizer(), k=3))
        result = dspex.Evaluate(data, lambda ex, pred, trace=None: ex.answer == pred.answer, workers=1,
                                progress=False).run(FirstPassage())
    assert result.score == 100.0 and {row.worker for row in result.rows} == {"worker-1"}
