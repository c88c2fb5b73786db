"""Hedged requests: an attempt still unanswered after the hedging delay gets a twin on a lease of its own;
the first answer wins, the other is cancelled and booked at its maximum (``UsageTotals.hedged``)."""

from __future__ import annotations

import time

import pytest

import dspex
from dspex.clients.hedging import BURST, FLOOR, MAX_TWINS, MIN_SAMPLES, SHARE, WINDOW_S, Hedging
from dspex.testing import Faults, ProviderServer

from ..scripted import questions as devset
from ..scripted import shout as answer
from ..scripted import shouted as exact

KEY = "sk-test-hedging-0123"


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


def test_an_attempt_that_started_before_any_latency_was_known_looks_again_a_quarter_into_its_timeout():
    assert Hedging.look_again(30.0) == 7.5 and Hedging.look_again(2.0) == FLOOR


def test_at_most_a_share_of_the_recent_attempts_is_hedged():
    now = [0.0]
    h = Hedging(clock=lambda: now[0])
    taken = sum(h.take() for _ in range(100))
    assert taken == BURST and not h.take()  # the burst is spent
    for _ in range(round(1 / SHARE)):
        h.observe(True, 0.1)
    assert h.take() and not h.take()  # one more per 1/SHARE attempts
    for _ in range(10_000):  # a wave of 10,000 attempts within the window ...
        h.observe(True, 0.1)
    assert sum(h.take() for _ in range(1000)) == 10_000 * SHARE  # ... earns twins for 2% of them at once
    for _ in range(10_000):
        h.observe(True, 0.1)
    now[0] += WINDOW_S + 1  # the wave is over: the bucket holds the burst again
    h.observe(True, 0.1)
    assert sum(h.take() for _ in range(1000)) == BURST


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


def test_a_twin_that_hangs_too_gets_a_twin_of_its_own(rt):
    """One request at a time: the 21st hangs, and so does its twin; a second twin goes a delay later."""
    faults = Faults(schedule=["ok"] * 20 + ["hang", "hang"], hang_s=60.0, latency=0.05)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server)
        start = time.monotonic()
        result = dspex.Evaluate(devset(30), exact, max_concurrency=1, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0 and time.monotonic() - start < 12.0
        assert len(server.log) == 32 and settle(lm) == 0
        usage = lm.usage()
        assert (usage.requests, usage.hedged, usage.unconfirmed_calls) == (30, 2, 2)


def test_a_hung_first_attempt_timing_out_does_not_cancel_its_twin(rt):
    """The twin goes at 0.5 s and answers at 1.3 s; the first attempt times out at 1 s meanwhile: the twin
    is let finish and its answer is the request's (with no retries left, a timeout that won would fail it)."""
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(schedule=["hang"], hang_s=60.0, latency=0.8)) as server:
        lm = make_lm(server, hedge=0.5, timeout=1.0, retries=0)
        result = dspex.Evaluate(devset(1), exact, max_concurrency=1, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0, [str(r.error) for r in result.rows]
        assert settle(lm) == 0
        usage = lm.usage()
        assert (usage.requests, usage.ok) == (1, 1)
        assert usage.hedged == len(server.log) - 1 >= 1  # a second twin may have gone at 1 s


def test_a_twin_that_fails_at_once_is_replaced_at_once(rt):
    """One request at a time: the 21st hangs; its twin gets a quick 500: another twin goes at once (not a
    delay later, and not the hung attempt's timeout), and answers."""
    faults = Faults(schedule=["ok"] * 20 + ["hang", "500"], hang_s=60.0, latency=0.05)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server, timeout=20.0)
        start = time.monotonic()
        result = dspex.Evaluate(devset(21), exact, max_concurrency=1, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0 and time.monotonic() - start < 10.0
        log = server.log
        assert len(log) == 23 and settle(lm) == 0
        hung, refused, again = log[20:]
        assert (hung.fault, refused.status, again.status) == ("hang", 500, 200)
        assert again.at - refused.at < 0.5  # at once, not the hedging delay (the 1 s floor) later
        usage = lm.usage()
        assert (usage.requests, usage.ok, usage.hedged) == (21, 21, 2)


def test_a_late_attempt_that_finds_the_share_used_up_looks_again_later(rt):
    """No twin may go when the hung attempt is late (the bucket holds 0.99); the other example's answer
    refills it, and a quarter of the timeout later the twin goes: not the 4 s timeout."""
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(schedule=["hang"], hang_s=60.0, latency=0.5)) as server:
        lm = make_lm(server, hedge=0.3, timeout=4.0, retries=0)  # the other answers at 0.5 s, after the 0.3 s look
        lm._need_pipeline().hedging._tokens = 0.99  # (as after a burst of twins)
        start = time.monotonic()
        result = dspex.Evaluate(devset(2), exact, max_concurrency=2, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        assert result.score == 100.0 and time.monotonic() - start < 3.0
        assert lm.usage().hedged == 1


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


def test_the_first_attempts_of_a_run_are_hedged_once_latencies_are_known(rt):
    """The first requests start before any latency is known; one of them hangs: a quarter into its timeout
    it looks again, and by then the others' answers say when to hedge."""
    faults = Faults(schedule=["hang"] + ["ok"] * 40, hang_s=60.0, latency=0.05)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server, timeout=8.0)  # it looks again at 2 s (the twin's delay is the 1 s floor by then)
        start = time.monotonic()
        result = dspex.Evaluate(devset(40), exact, max_concurrency=8, progress=False)(
            dspex.Predict("question -> answer", lm=lm))
        wall = time.monotonic() - start
        assert result.score == 100.0
        assert 2.0 <= wall < 6.0, wall  # after the look again, before the 8 s timeout
        assert lm.usage().hedged == 1 and len(server.log) == 41


def test_an_example_cancelled_during_a_hedge_gives_both_leases_back(rt):
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(hang_rate=1.0, hang_s=60.0)) as server:
        lm = make_lm(server, hedge=0.2, timeout=60.0)
        result = dspex.Evaluate(devset(4), exact, max_concurrency=4, progress=False, timeout_per_example=0.8)(
            dspex.Predict("question -> answer", lm=lm))
        assert [type(r.error).__name__ for r in result.rows] == ["ExampleTimeout"] * 4
        assert settle(lm) == 0  # the first attempts' leases and the twins'
        assert len(server.log) == 4 * (1 + MAX_TWINS)  # each hung attempt had its twins (at 0.2 and 0.4 s)
        usage = lm.usage()
        assert usage.unconfirmed_calls == 4 * (1 + MAX_TWINS) and usage.hedged == 4 * MAX_TWINS
        assert (usage.requests, usage.failed) == (4, 4)  # the twins are not requests of their own
