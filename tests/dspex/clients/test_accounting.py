"""Accounting that never under-reports: the ledger against what the provider really billed.

A worker process killed with requests in flight, a 200 whose body is broken or cut off, a token count
that is no count: the ledger books at least what the provider bills, and says which part it could not
confirm (``unconfirmed_calls`` / ``unconfirmed_tokens`` / ``unconfirmed_cost``)."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

import dspex
from dspex.clients.budgets import BudgetBook, RunBudget, Spend
from dspex.clients.prices import cost_of, prompt_tokens_bound
from dspex.clients.scope import streaming
from dspex.testing import Faults, ProviderServer
from supervision import procfs
from tests.conftest import wait_until
from tests.dspex.evaluate.test_evaluate import answer, devset, exact
from tests.dspex.test_hardening import KEY, Raw, completion, lm_for

from .conftest import make_lm

PRICE = (1000.0, 2000.0)  # USD per million tokens


def billed(server: ProviderServer) -> tuple[int, float]:
    """Tokens and USD the provider billed: every request it answered with a 200, readable or not."""
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in server.log)
    return tokens, sum(cost_of(PRICE, r.prompt_tokens, r.completion_tokens) for r in server.log)


# --- run budgets: what a client knows of a compile's spend ----------------------------------------------

def test_a_budget_book_adds_what_the_ledger_has_not_acknowledged_to_its_last_total():
    book = BudgetBook()
    book.open(RunBudget("compile-1-1", usd=1.0))
    assert book.exhausted("compile-1-1:eval-1-2") is None
    book.book("compile-1-1:eval-1-2", 0.5, 100)
    book.book("compile-1-10:eval-1-11", 9.0, 100)  # another run (a prefix of its id is not its parent)
    book.sending(1)  # batch 1 on its way to the ledger
    book.book("compile-1-1:ask-1-3", 0.25, 10)
    assert book.total("compile-1-1") == Spend(0.75, 110) and book.exhausted("compile-1-1:eval-1-2") is None
    book.acknowledged(1, {"compile-1-1": Spend(0.7, 120)})  # batch 1 (0.5) and another client's 0.2
    assert book.total("compile-1-1") == Spend(0.95, 130)
    book.book("compile-1-1:eval-1-2", 0.05, 1)
    assert "budget_usd=1 of run compile-1-1 is spent" in book.exhausted("compile-1-1:eval-1-4:eval-1-5")
    assert book.exhausted("compile-1-10") is None and book.exhausted(None) is None
    book.close("compile-1-1")
    assert book.exhausted("compile-1-1:eval-1-2") is None


# --- token counts that are no counts -------------------------------------------------------------------

@pytest.mark.parametrize("usage,field", [((1e100, 3), "usage.prompt_tokens"), ((2, 1e100), "usage.completion_tokens"),
                                         ((10 ** 30, 3), "usage.prompt_tokens"), ((2.5, 3), "usage.prompt_tokens")])
def test_an_absurd_token_count_is_refused_naming_the_field(drt, usage, field):
    with Raw(completion("ok", *usage)) as server:
        lm = lm_for(server.url)
        with pytest.raises(dspex.MalformedResponse, match=f"token count {field}") as info:
            lm.request("hi")
        totals = lm.usage()
    # before: 1e100 was taken as a count (the request succeeded; the ledger held a 101-digit prompt_tokens)
    assert info.value.attempts == 2
    # each attempt was billed but its count is not readable: booked at its maximum, and said so
    most = prompt_tokens_bound([{"role": "user", "content": "hi"}]) + 512
    assert totals.unconfirmed_calls == 2 and totals.total_tokens == totals.unconfirmed_tokens == 2 * most


def test_a_whole_float_count_is_a_count(drt):
    with Raw(completion("ok", 12.0, 3)) as server:
        assert lm_for(server.url).request("hi").usage.prompt_tokens == 12


# --- a 200 whose answer is broken ----------------------------------------------------------------------

def test_a_broken_answer_that_states_its_usage_is_booked_as_it_says(drt):
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": {"not": "text"}}}],
                       "usage": {"prompt_tokens": 30, "completion_tokens": 7}}).encode()
    with Raw(body) as server:
        lm = lm_for(server.url, price=PRICE)
        with pytest.raises(dspex.MalformedResponse):
            lm.request("hi")
        totals = lm.usage()
    # before: 0 tokens and $0 booked for two billed answers of 37 tokens
    assert (totals.prompt_tokens, totals.completion_tokens, totals.unconfirmed_calls) == (60, 14, 0)
    assert totals.cost == pytest.approx(2 * cost_of(PRICE, 30, 7))


def test_broken_and_cut_off_answers_are_booked_at_least_as_billed(server, drt):
    server.set_faults(Faults(malformed_rate=0.05, truncate_rate=0.05, seed=7))
    lm = make_lm(server, price=PRICE, retries=3, max_in_flight=8)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: lm.request(f"question {i}").text, range(200)))
    assert outcomes == [f"ans:question {i}" for i in range(200)]
    totals = lm.usage()
    tokens, usd = billed(server)
    broken = [r for r in server.log if r.status == 200 and r.fault in ("malformed", "truncate")]
    assert broken  # the fault plan drew some
    # before: the ledger had only the readable answers (1,200 of the 1,356 tokens billed: 11.5% short)
    assert totals.total_tokens >= tokens and totals.cost >= usd - 1e-12
    assert totals.unconfirmed_calls == len(broken)
    confirmed = sum(r.prompt_tokens + r.completion_tokens for r in server.successes())
    assert totals.total_tokens - totals.unconfirmed_tokens == confirmed  # what was readable, exactly


def test_ctrl_c_mid_stream_books_the_attempt_at_its_maximum(server, drt):
    lm = make_lm(server, price=PRICE)

    def sink(piece):  # Ctrl-C as the first piece of the answer arrives: the provider has made (and bills) it
        if piece:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), streaming(sink):
        lm.request("tell me a story")
    totals = lm.usage()
    tokens, usd = billed(server)
    # before: the lease came back as a failure with 0 tokens; the provider had billed the streamed answer
    assert tokens > 0 and totals.total_tokens >= tokens and totals.cost >= usd
    assert totals.unconfirmed_calls == 1 and totals.failed == 1


# --- a worker process killed with requests in flight ------------------------------------------------------

def descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (by parentage, never by name)."""
    found, todo = set(), [pid]
    while todo:
        for child in procfs.children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def eval_workers_under(root: int) -> list[int]:
    """The evaluation workers in the tree of our runtime's root supervisor process (by parentage)."""
    workers = []
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().startswith(b"dspex: eval-worker") and not procfs.gone(pid):
                    workers.append(pid)
        except OSError:
            continue
    return workers


@pytest.mark.slow
@pytest.mark.parametrize("max_in_flight", [64, 6], ids=["room", "some-parked"])
def test_a_worker_killed_with_requests_in_flight_is_booked_at_their_maximum(tmp_path, monkeypatch, max_in_flight):
    """``some-parked``: 8 requests at once for 6 places, so the killed worker may also have requests parked at
    the client actor; its sweep takes back the leases and drops those in one pass, and lives on."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read their key from the environment
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.3)) as server, \
            dspex.runtime("multiproc", cache_dir=tmp_path / "cache", log_level=None) as rt:
        lm = dspex.LM("openai/eval", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False, price=PRICE,
                      max_in_flight=max_in_flight)
        killed: list[int] = []
        root = rt.actors._root_pid  # the admin is a daemon: our actors are found under the root supervisor

        def kill_a_worker() -> None:  # once each worker has its 4 requests out
            workers = wait_until(lambda: len(server.log) >= 12 and eval_workers_under(root), timeout=30)
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])

        with ThreadPoolExecutor(1) as pool:
            killer = pool.submit(kill_a_worker)
            result = dspex.Evaluate(devset(48), exact, max_concurrency=8, workers=2, progress=False,
                                    timeout_per_example=30).run(dspex.Predict("question -> answer", lm=lm))
            killer.result()
    assert killed, "no worker was killed"
    assert [r.index for r in result.rows] == list(range(48)) and result.score == 100.0  # every example, one row
    usage = result.usage
    tokens, usd = billed(server)
    # before: the provider answered (and billed) the killed worker's requests, the ledger never heard of them
    # (52 requests answered, 48 booked; 8,400 of the 9,100 tokens billed)
    assert len(server.log) > 48  # the killed worker's requests were answered too
    assert usage.requests + usage.retries >= len(server.log)
    assert usage.total_tokens >= tokens and usage.cost >= usd - 1e-12
    assert usage.unconfirmed_calls >= 1 and usage.unconfirmed_tokens > 0  # the dead worker's leases, marked
