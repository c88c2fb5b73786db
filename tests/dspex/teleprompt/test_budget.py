"""A compile's ``budget_usd`` is held at admission, for every optimizer: what the provider bills is at most the
budget plus the calls in flight (the client's ``max_in_flight``) times the most one call costs. Priced model,
the simulator's own bill; a budget of 40% of what the unbudgeted compile costs, so it is reached mid-run."""

from __future__ import annotations

import pytest

import dspex
from dspex.clients.prices import cost_of
from dspex.testing import Faults, ProviderServer

from .conftest import KEY, answer, data, exact, feedback_metric, task_answer, task_data

PRICE = (2000.0, 2000.0)  # USD per million tokens: a call of ~200 tokens costs ~$0.4
IN_FLIGHT = 8  # the client's max_in_flight: at most this many calls are out when the budget is reached


def random_search(student, **options):
    return dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=8, max_bootstrapped_demos=2,
                                                  max_labeled_demos=2).compile(
        student, trainset=data(24, "t"), valset=data(48, "v"), **options)


def bootstrap(student, **options):
    return dspex.BootstrapFewShot(exact, max_bootstrapped_demos=4, max_labeled_demos=4).compile(
        student, trainset=data(120, "t"), **options)


def mipro(student, **options):
    return dspex.MIPROv2(metric=feedback_metric, auto=None, num_candidates=5, num_trials=10, minibatch_size=8,
                         minibatch_full_eval_steps=3, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        student, trainset=task_data(16, "t"), valset=task_data(32, "v"), **options)


def gepa(student, **options):
    return dspex.GEPA(metric=feedback_metric, max_metric_calls=300).compile(
        student, trainset=task_data(16, "t"), valset=task_data(32, "v"), **options)


OPTIMIZERS = {"random_search": (random_search, answer), "bootstrap": (bootstrap, answer),
              "mipro": (mipro, task_answer), "gepa": (gepa, task_answer)}


def bill(server: ProviderServer) -> tuple[float, float]:
    """What the provider billed (USD), and the most it billed for one call."""
    costs = [cost_of(PRICE, r.prompt_tokens, r.completion_tokens) for r in server.log if r.status == 200]
    return sum(costs), max(costs)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_usd_budget_is_passed_by_at_most_the_calls_in_flight(tmp_path, name):
    optimize, sim_answer = OPTIMIZERS[name]
    with ProviderServer(answer=sim_answer, api_key=KEY, faults=Faults(latency=0.02)) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False, price=PRICE, max_tokens=64,
                      max_in_flight=IN_FLIGHT)
        whole = optimize(dspex.Predict("question -> answer", lm=lm), max_concurrency=16).compile_report.cost
        server.clear_log()
        budget = round(0.4 * whole, 2)
        report = optimize(dspex.Predict("question -> answer", lm=lm), budget_usd=budget,
                          max_concurrency=16).compile_report
    spent, one_call = bill(server)
    assert report.stopped == "budget"
    # before: the budget was checked as rows finished, and every row already dispatched ran on (random search:
    # $137.33 billed for a budget of $120, bound $123.66; BootstrapFewShot $13.78 for $6, bound $10.59)
    assert spent <= budget + IN_FLIGHT * one_call, (spent, budget, one_call)
    assert report.usage.cost >= spent - 1e-9  # the report never says less than the provider billed


@pytest.mark.slow
def test_the_budget_holds_with_evaluations_on_worker_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read their key from the environment
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.02)) as server, \
            dspex.runtime("multiproc", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False, price=PRICE, max_tokens=64,
                      max_in_flight=IN_FLIGHT)
        report = random_search(dspex.Predict("question -> answer", lm=lm), budget_usd=60.0, max_concurrency=16,
                               workers=2).compile_report
    spent, one_call = bill(server)
    assert report.stopped == "budget"
    # before: $151.07 billed for a budget of $120 (bound $123.66): each worker ran on the rows it had queued
    assert spent <= 60.0 + IN_FLIGHT * one_call, (spent, one_call)
    assert report.usage.cost >= spent - 1e-9
