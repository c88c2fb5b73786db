"""Hypothesis: under any fault schedule, every request ends exactly once, and the ledger matches the server."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex
from dspex.testing import Faults, ProviderServer

from .conftest import KEY

FAULTS = ["ok", "ok", "ok", "500", "503", "429", "408", "400", "malformed", "truncate", "reset"]
_ids = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with ProviderServer(answer=lambda req: f"ans:{req.last_user}", api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path_factory.mktemp("cache"), log_level=None) as rt:
        lm = dspex.LM("openai/prop", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False, retries=2,
                      max_in_flight=3, backoff_base=0.001, backoff_cap=0.005,
                      breaker=dspex.Breaker(max_failures=10_000, window=1.0))
        yield server, rt, lm


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=st.lists(st.sampled_from(FAULTS), max_size=25), n=st.integers(1, 8),
       threads=st.integers(1, 4), retry_after=st.sampled_from([None, 0.0, 0.01]))
def test_every_request_ends_once_and_the_ledger_matches_the_server(world, schedule, n, threads, retry_after):
    server, rt, lm = world
    server.set_faults(Faults(schedule=schedule, retry_after=retry_after))
    server.clear_log()
    before = lm.usage()
    prompts = [f"p{next(_ids)}" for _ in range(n)]

    def run(prompt):
        try:
            return ("ok", lm.request(prompt))
        except dspex.LMError as exc:  # every failure is typed
            return ("error", exc)

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(run, prompts))
    assert len(outcomes) == n
    for prompt, (kind, value) in zip(prompts, outcomes):
        if kind == "ok":
            assert value.text == f"ans:{prompt}"  # the right answer for this request, never another's
            assert 1 <= value.attempts <= 3
        else:
            assert isinstance(value, (dspex.ProviderError, dspex.MalformedResponse, dspex.RateLimited))
    after = lm.usage()
    delta = {f: getattr(after, f) - getattr(before, f) for f in ("requests", "ok", "failed", "prompt_tokens",
                                                                 "completion_tokens", "unconfirmed_calls",
                                                                 "unconfirmed_tokens")}
    ok = server.successes()
    assert delta["requests"] == n
    assert delta["ok"] == sum(1 for k, _ in outcomes if k == "ok") == len(ok)
    assert delta["failed"] == sum(1 for k, _ in outcomes if k == "error")
    # the counts the provider sent are booked as they are; a 200 whose body was broken or cut off is billed
    # all the same and booked at the attempt's maximum, unconfirmed: the ledger never says less than the bill
    broken = [r for r in server.log if r.status == 200 and r.fault in ("malformed", "truncate")]
    assert delta["unconfirmed_calls"] == len(broken)
    tokens = delta["prompt_tokens"] + delta["completion_tokens"]
    assert tokens - delta["unconfirmed_tokens"] == sum(r.prompt_tokens + r.completion_tokens for r in ok)
    assert tokens >= sum(r.prompt_tokens + r.completion_tokens for r in server.log)
    # each request reached the server at most retries + 1 times
    per_prompt = {p: sum(1 for r in server.log if isinstance(r.body, dict) and r.body["messages"][-1]["content"] == p)
                  for p in prompts}
    assert all(1 <= c <= 3 for c in per_prompt.values())
    report = rt.usage()
    assert report.by_client[lm.config.client_key] == after
