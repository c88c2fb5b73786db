"""dspex.ColBERTv2 (DSPy's ColBERTv2 client) against the provider simulator's ColBERT server over real HTTP:
GET and POST searches, k, simplify, the response cache, retries of 500s, 429's Retry-After, malformed bodies,
the ledger, and Retrieve with it as the rm."""

from __future__ import annotations

import base64
import copy
import pickle

import pytest

import dspex
from dspex.clients.config import Secret
from dspex.clients.wire import WIRE_FORMATS, WireError
from dspex.dsp.colbertv2 import ColBERTv2 as DspPathColBERTv2
from dspex.dsp.colbertv2 import colbertv2_get_request_v2, colbertv2_post_request_v2
from dspex.errors import ConfigError, ConnectionFailed, MalformedResponse, RateLimited, ServerError
from dspex.testing import ProviderServer
from dspex.testing.faults import Faults

CORPUS = ["The cat sat on the mat.", "A dog chased the cat up a tree.", "Birds sing at dawn.",
          "The capital of France is Paris.", "Paris hosts the Eiffel Tower."]
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05}  # retries soon: each test stays well under 2 s


@pytest.fixture
def server():
    with ProviderServer(passages=CORPUS) as srv:
        yield srv


@pytest.fixture
def rt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def searches(server):
    return [r for r in server.log if r.path == "/colbert"]


def test_get_search_returns_dspy_passages_best_first_and_respects_k(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"))
    found = rm("where does the cat sit", k=2)
    assert [p.pid for p in found] == [0, 1]  # both share "the" and "cat" with the query: a tie goes to the lower pid
    assert found[0].long_text == found[0].text == CORPUS[0] == found[0]["long_text"]
    assert found[0].score >= found[1].score
    (sent,) = searches(server)
    assert (sent.method, sent.body) == ("GET", {"query": "where does the cat sit", "k": "2"})
    assert len(rm("paris", k=10)) == len(CORPUS)  # k past the corpus: all of it


def test_post_search_sends_json(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), post_requests=True)
    found = rm("capital of France", k=1)
    assert [(p.pid, p.long_text) for p in found] == [(3, CORPUS[3])]
    (sent,) = searches(server)
    assert (sent.method, sent.body) == ("POST", {"query": "capital of France", "k": 1})


def test_simplify_gives_the_texts(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"))
    assert rm("Paris", k=2, simplify=True) == [CORPUS[3], CORPUS[4]]


def test_dspy_url_and_port_form(server, rt):
    host, port = server.url.rsplit(":", 1)
    rm = dspex.ColBERTv2(url=host, port=int(port))
    assert rm.url == server.url
    assert rm("birds", k=1, simplify=True) == [CORPUS[2]]
    assert server.log[-1].path == "/"


def test_an_identical_search_is_answered_from_the_cache(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"))
    first = rm("the cat", k=2)
    assert rm("the cat", k=2) == first
    assert len(searches(server)) == 1  # the second sent nothing
    rm("the cat", k=3)  # another k is another search
    assert len(searches(server)) == 2
    usage = rm.usage()
    assert (usage.requests, usage.ok, usage.cache_hits) == (3, 2, 1)
    uncached = dspex.ColBERTv2(url=server.base_url("colbert"), cache=False, name="fresh")
    uncached("the cat", k=2)
    uncached("the cat", k=2)
    assert len(searches(server)) == 4


def test_a_500_then_ok_is_retried(server, rt):
    server.set_faults(Faults(schedule=["500"]))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), **FAST)
    assert rm("dog", k=1, simplify=True) == [CORPUS[1]]
    assert [r.status for r in searches(server)] == [500, 200]
    assert rm.usage().retries == 1


def test_500s_past_the_retries_are_a_server_error(server, rt):
    server.set_faults(Faults(error_rates={500: 1.0}))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), retries=1, **FAST)
    with pytest.raises(ServerError) as caught:
        rm("dog")
    assert (caught.value.status, caught.value.attempts) == (500, 2)
    assert "colbert/colbertv2" in str(caught.value)


def test_a_429_honours_retry_after(server, rt):
    server.set_faults(Faults(schedule=["429"], retry_after=0.4))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), **FAST)
    assert rm("birds", k=1, simplify=True) == [CORPUS[2]]
    throttled, answered = searches(server)
    assert (throttled.status, answered.status) == (429, 200)
    assert answered.at - throttled.at >= 0.35  # waited what the server asked, not the 10 ms backoff


def test_429s_past_the_retries_are_rate_limited(server, rt):
    server.set_faults(Faults(error_rates={429: 1.0}, retry_after=0.05))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), retries=0)
    with pytest.raises(RateLimited) as caught:
        rm("birds")
    assert caught.value.retry_after == pytest.approx(0.05)


def test_a_malformed_body_is_malformed_response(server, rt):
    server.set_faults(Faults(malformed_rate=1.0))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), retries=1, **FAST)
    with pytest.raises(MalformedResponse):
        rm("birds")
    assert len(searches(server)) == 2  # retried once, as any malformed answer
    usage = rm.usage()
    assert (usage.failed, usage.prompt_tokens, usage.unconfirmed_tokens, usage.cost) == (1, 0, 0, 0.0)


def test_a_truncated_body_is_retried_then_connection_failed(server, rt):
    server.set_faults(Faults(schedule=["truncate"]))
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), **FAST)
    assert rm("birds", k=1, simplify=True) == [CORPUS[2]]
    server.set_faults(Faults(truncate_rate=1.0))
    with pytest.raises(ConnectionFailed):
        dspex.ColBERTv2(url=server.base_url("colbert"), retries=0, name="once")("dawn")


def test_the_wire_format_refuses_what_is_not_colberts_shape():
    wire = WIRE_FORMATS["colbert"]
    for body in ({"passages": []}, {"topk": {"text": "x"}}, {"topk": [{"pid": 1}]}, ["x"], "topk"):
        with pytest.raises(WireError, match="not a ColBERT answer"):
            wire.parse(body)
    with pytest.raises(WireError, match="index not loaded"):
        wire.parse({"error": True, "message": "index not loaded"})
    assert wire.parse({"topk": []}).text == "[]"  # no passage is an answer, not an empty one
    assert wire.headers(Secret("reader:pw")) == {"Authorization": "Basic " + base64.b64encode(b"reader:pw").decode()}


def test_the_ledger_counts_searches_at_no_cost_and_lm_history_leaves_them_out(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"))
    with dspex.track_usage() as tracked:
        for query in ("cat", "dog", "cat"):
            rm(query, k=1)
    report = rt.usage()
    totals = report.by_client[f"colbert/colbertv2@{server.base_url('colbert')}"]
    assert (totals.requests, totals.ok, totals.cache_hits, totals.cost, totals.total_tokens) == (3, 2, 1, 0.0, 0)
    assert rt.engines.history() == [] and tracked.get_total_tokens() == {}


def test_retrieve_with_it_as_the_rm(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"))
    with dspex.context(rm=rm):
        assert dspex.Retrieve(k=2)("Paris").passages == [CORPUS[3], CORPUS[4]]
    assert dspex.Retrieve(k=1, rm=rm)("birds at dawn").passages == [CORPUS[2]]


def test_it_pickles_and_copies_as_a_reference_to_its_server(server, rt):
    rm = dspex.ColBERTv2(url=server.base_url("colbert"), post_requests=True)
    clone = pickle.loads(pickle.dumps(rm))
    assert (clone.url, clone.post_requests) == (rm.url, True)
    assert clone("cat", k=1, simplify=True) == [CORPUS[0]]
    assert copy.deepcopy(rm) is rm


def test_dspy_import_path_and_request_helpers(server, rt):
    assert DspPathColBERTv2 is dspex.ColBERTv2 is dspex.retrievers.ColBERTv2
    url = server.base_url("colbert")
    got = colbertv2_get_request_v2(url, "capital of France", k=3)
    assert got[0]["long_text"] == CORPUS[3] and len(got) == 3
    assert colbertv2_post_request_v2(url, "Eiffel Tower", k=1)[0]["text"] == CORPUS[4]
    assert [r.method for r in searches(server)] == ["GET", "POST"]


def test_credentials_in_the_url_go_as_basic_auth_and_stay_out_of_the_client_key(server, rt):
    rm = dspex.ColBERTv2(url=server.url.replace("http://", "http://reader:hunter2-s3cret-value@") + "/colbert")
    assert rm("cat", k=1, simplify=True) == [CORPUS[0]]
    assert searches(server)[0].headers["authorization"] == "<redacted>"  # sent (the simulator hides its value)
    assert list(rt.usage().by_client) == [f"colbert/colbertv2@{server.base_url('colbert')}"]


def test_settings_are_checked_and_a_password_in_the_url_never_shows(server):
    with pytest.raises(ConfigError, match="http"):
        dspex.ColBERTv2(url="20.102.90.50:2017/wiki17_abstracts")
    rm = dspex.ColBERTv2(url="http://reader:hunter2-s3cret-value@127.0.0.1:9/colbert")
    assert "hunter2" not in repr(rm) and "***" in repr(rm)
    with pytest.raises(ConfigError, match="k must be"):
        rm("x", k=0)
    with pytest.raises(ConfigError, match="retriever"):
        dspex.LM("colbert/colbertv2", base_url=server.base_url("colbert"))


class FirstPassage(dspex.Module):
    def __init__(self) -> None:
        super().__init__()
        self.retrieve = dspex.Retrieve(k=1)

    def forward(self, question: str) -> dspex.Prediction:
        return dspex.Prediction(answer=self.retrieve(question).passages[0])


@pytest.mark.slow
def test_evaluate_workers_search_through_the_runtimes_client(server, tmp_path):
    """A worker process binds the configured ColBERTv2 to the runtime it attached to: its searches are
    booked in that runtime's ledger."""
    data = [dspex.Example(question=q, answer=CORPUS[i]).with_inputs("question")
            for q, i in (("cat mat", 0), ("dawn", 2), ("Eiffel", 4))]
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as runtime:
        dspex.configure(rm=dspex.ColBERTv2(url=server.base_url("colbert")))
        result = dspex.Evaluate(data, lambda ex, pred, trace=None: ex.answer == pred.answer, workers=1,
                                progress=False).run(FirstPassage())
        totals = runtime.usage().by_client[f"colbert/colbertv2@{server.base_url('colbert')}"]
    assert result.score == 100.0 and {row.worker for row in result.rows} == {"worker-1"}
    assert totals.ok == len(searches(server)) == 3
