"""dspex.Embedder over HTTP: each batch one request of the client pipeline, under the endpoint's client actor
(its retries, ledger and prices), bound to an evaluation worker's runtime like an LM."""

from __future__ import annotations

import pickle

import pytest

import dspex
from dspex.errors import ServerError
from dspex.testing import Faults, ProviderServer

KEY = "sk-test-embedder-pipeline-98765"
TEXTS = ["a cat purrs", "a dog barks", "wings and feathers", "a kitten on a mat", "puppy fetch"]


@pytest.fixture
def server():
    with ProviderServer(answer=lambda req: "unused", api_key=KEY) as sim:
        yield sim


def embeddings_requests(sim) -> list:
    return [e for e in sim.log if e.provider == "embeddings"]


def test_each_batch_is_one_request_booked_in_the_ledger_at_the_published_price(server, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None) as rt:
        embedder = dspex.Embedder("openai/text-embedding-3-small", base_url=server.base_url(), api_key=KEY,
                                  batch_size=2)
        vectors = embedder(TEXTS)
        assert len(vectors) == 5 and all(len(v) == 64 for v in vectors)
        totals = embedder.usage()
        sent = embeddings_requests(server)
        assert totals.requests == totals.ok == len(sent) == 3  # 2 + 2 + 1
        assert totals.prompt_tokens == sum(e.prompt_tokens for e in sent) > 0 and totals.completion_tokens == 0
        assert totals.cost == pytest.approx(totals.prompt_tokens * 0.02 / 1e6)
        by_client = rt.usage().by_client
        assert f"embeddings/text-embedding-3-small@{server.base_url()}" in by_client
        assert embedder(TEXTS[:2]) == vectors[:2] and len(embeddings_requests(server)) == 3  # cached per text
        assert embedder.status().breaker == "closed"


def test_server_errors_are_retried_by_the_client_and_an_exhausted_retry_is_typed(server, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        server.set_faults(Faults(error_rates={500: 0.5}, seed=3))
        embedder = dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY, cache=False,
                                  batch_size=1)
        assert len(embedder(TEXTS)) == 5  # every text answered, after retries
        assert embedder.usage().retries >= 1
        server.set_faults(Faults(error_rates={500: 1.0}))
        failing = dspex.Embedder("openai/sim-embed-2", base_url=server.base_url(), api_key=KEY, cache=False)
        with pytest.raises(ServerError):
            failing(["x"])


def test_the_key_stays_out_of_reprs_pickles_and_errors_and_an_lm_of_it_is_refused(server, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        embedder = dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY)
        embedder(["warm"])
        assert KEY not in repr(embedder) and KEY.encode() not in pickle.dumps(embedder)
        with pytest.raises(dspex.AuthError) as err:
            dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY + "-wrong", cache=False)(["x"])
        assert KEY not in str(err.value)
        with pytest.raises(dspex.ConfigError, match="not an LM"):
            dspex.LM("embeddings/text-embedding-3-small")
        local = dspex.Embedder(lambda texts: [[1.0, 0.0] for _ in texts])
        with pytest.raises(dspex.ConfigError, match="no client"):
            local.usage()


class NearestPassage(dspex.Module):
    """Answers with the passage nearest the question (no LM): the retrieval is the program."""

    def __init__(self, search) -> None:
        super().__init__()
        self.search = search

    def forward(self, question: str) -> dspex.Prediction:
        return dspex.Prediction(answer=self.search(question).passages[0])


@pytest.mark.slow
def test_evaluate_workers_embed_queries_through_the_runtimes_client(server, tmp_path, monkeypatch):
    """A worker process binds a RAG module's Embeddings (and its HTTP embedder) to the runtime it attached
    to: the queries are booked in that runtime's ledger, and no runtime starts in the worker."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read provider keys from their environment
    corpus = ["whiskers purr meow kitten", "bark leash puppy fetch", "wings feathers nest chirp"]
    data = [dspex.Example(question=q, answer=corpus[i]).with_inputs("question")
            for q, i in (("purr kitten", 0), ("puppy leash", 1), ("nest wings", 2), ("meow whiskers", 0))]
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as runtime:
        embedder = dspex.Embedder("openai/sim-embed", base_url=server.base_url(), api_key=KEY, cache=False)
        search = dspex.retrievers.Embeddings(corpus=corpus, embedder=embedder, k=1)
        result = dspex.Evaluate(data, lambda ex, pred, trace=None: ex.answer == pred.answer, workers=1,
                                progress=False).run(NearestPassage(search))
        totals = runtime.usage().by_client[f"embeddings/sim-embed@{server.base_url()}"]
    assert result.score == 100.0 and {row.worker for row in result.rows} == {"worker-1"}
    assert totals.ok == len(embeddings_requests(server)) == 1 + 4  # the corpus once, then each query
