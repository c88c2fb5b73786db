"""admission.decide: the pure order of the pipeline's checks."""

from __future__ import annotations

from dspex.clients.admission import Facts, Verdict, decide


def facts(**changes):
    base = dict(backoff_left=0.0, rate_delay=0.0, in_flight=0, max_in_flight=4, probing=False, budget_spent=False)
    return Facts(**{**base, **changes})


def test_a_free_request_is_granted():
    assert decide(facts()).verdict is Verdict.GRANT


def test_the_budget_comes_first_then_backoff_rate_and_room():
    everything = facts(budget_spent=True, backoff_left=1.0, rate_delay=2.0, in_flight=4)
    assert decide(everything).verdict is Verdict.BUDGET
    assert decide(facts(backoff_left=1.0, rate_delay=2.0, in_flight=4)).seconds == 1.0
    assert decide(facts(rate_delay=2.0, in_flight=4)).verdict is Verdict.RATE
    assert decide(facts(in_flight=4)).verdict is Verdict.ROOM


def test_the_probe_goes_alone():
    assert decide(facts(probing=True)).verdict is Verdict.GRANT
    assert decide(facts(probing=True, in_flight=1)).verdict is Verdict.ROOM
