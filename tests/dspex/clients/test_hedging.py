"""Hedged requests: an attempt still unanswered after the hedging delay gets a twin on a lease of its own;
the first answer wins, the other is cancelled and booked at its maximum (``UsageTotals.hedged``)."""

from __future__ import annotations

import time

import pytest

import dspex
from dspex.clients.hedging import BURST, FLOOR, MIN_SAMPLES, SHARE, Hedging
from dspex.testing import Faults, ProviderServer

from ..scripted import chat

KEY = "sk-test-hedging-0123"


def answer(req):
    number = req.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return chat(answer=number.upper())


def exact(example, pred, trace=None):
    return pred.answer == example.question.upper()


def devset(n):
    return [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(n)]


def make_lm(server, **options):
    defaults = {"api_key": KEY, "base_url": server.base_url(), "rpm": None, "cache": False}
    return dspex.LM("openai/hedged", **{**defaults, **options})


def settle(lm, deadline_s=5.0):
    deadline = time.monotonic() + deadline_s
    while lm.status().in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    return lm.status().in_flight


# --- the decision --------------------------------------------------------------------------------

def test_auto_waits_for_enough_latencies_then_hedges_after_twice_their_p95():
    h = Hedging()
    for _ in range(MIN_SAMPLES - 1):
        h.observe(True, 2.0)
    assert h.delay("auto", 30.0) is None  # too few known
    h.observe(True, 2.0)
    assert h.delay("auto", 30.0) == 4.0
    for _ in range(100):
        h.observe(False, 0.01)  # failures teach no latency
    assert h.delay("auto", 30.0) == 4.0
    quick = Hedging()
    for _ in range(MIN_SAMPLES):
        quick.observe(True, 0.05)
    assert quick.delay("auto", 30.0) == FLOOR  # never sooner than the floor
    assert quick.delay("auto", FLOOR) is None  # not shorter than the timeout: nothing to gain


def test_a_fixed_delay_and_none():
    h = Hedging()
    assert h.delay(0.5, 30.0) == 0.5  # a number needs no history
    assert h.delay(None, 30.0) is None


def test_at_most_a_share_of_attempts_is_hedged():
    h = Hedging()
    taken = sum(h.take() for _ in range(100))
    assert taken == BURST and h.delay(0.5, 30.0) is None  # the burst is spent
    for _ in range(round(1 / SHARE)):
        h.observe(True, 0.1)
    assert h.take() and not h.take()  # one more per 1/SHARE attempts


@pytest.mark.parametrize("bad", [0, -1.0, "sometimes", float("inf"), True])
def test_a_bad_setting_is_a_config_error(bad):
    with pytest.raises(dspex.ConfigError, match="hedge"):
        dspex.LM("openai/x", api_key=KEY, base_url="http://127.0.0.1:9/v1", hedge=bad)


# --- on the event loop, against the simulator ------------------------------------------------------

@pytest.fixture
def rt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def test_a_hung_attempt_gets_a_twin_and_the_row_ends_in_a_latency_not_the_timeout(rt):
    """At the defaults (hedge="auto", timeout=30 s): after 20 answers of ~50 ms, the 21st request hangs;
    its twin goes after the 1 s floor and answers: every row ok in seconds, the hung attempt booked as a
    hedge (at its maximum, not a request of its own)."""
    faults = Faults(schedule=["ok"] * 20 + ["hang"], hang_s=60.0, latency=0.05)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server)
        start = time.monotonic()
        result = dspex.Evaluate(devset(40), exact, max_concurrency=4, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        wall = time.monotonic() - start
        assert result.score == 100.0 and sorted(r.index for r in result.rows) == list(range(40))
        assert wall < 10.0, wall  # not the 30 s timeout
        assert len(server.log) == 41  # 40 requests and one twin
        assert settle(lm) == 0
        usage = lm.usage()
        assert (usage.requests, usage.ok, usage.failed, usage.hedged) == (40, 40, 0, 1)
        assert usage.unconfirmed_calls == 1 and usage.unconfirmed_tokens > 0  # the hung one, at its maximum


def test_without_hedging_the_same_hang_waits_for_the_timeout(rt):
    faults = Faults(schedule=["ok"] * 20 + ["hang"], hang_s=60.0, latency=0.05)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server, hedge=None, timeout=3.0)
        start = time.monotonic()
        result = dspex.Evaluate(devset(40), exact, max_concurrency=4, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0
        assert time.monotonic() - start >= 3.0
        assert lm.usage().hedged == 0 and len(server.log) == 41  # the hung one, then its retry


def test_an_example_cancelled_during_a_hedge_gives_both_leases_back(rt):
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(hang_rate=1.0, hang_s=60.0)) as server:
        lm = make_lm(server, hedge=0.2, timeout=60.0)
        result = dspex.Evaluate(devset(4), exact, max_concurrency=4, progress=False, timeout_per_example=0.8)(
            dspex.Predict("question -> answer", lm=lm))
        assert [type(r.error).__name__ for r in result.rows] == ["ExampleTimeout"] * 4
        assert settle(lm) == 0  # the first attempts' leases and the twins'
        assert len(server.log) == 8  # each hung attempt had its twin
        usage = lm.usage()
        assert usage.unconfirmed_calls == 8 and usage.hedged == 0
