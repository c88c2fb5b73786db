"""CircuitBreaker and RateLimiter on an injected clock: exact, no sleeping."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import SpecError
from supervision.resilience import (BreakerOpen, BreakerState, CircuitBreaker, RateLimiter, exponential_backoff,
                                    health_backoff)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(), ok=False)


def test_breaker_melts_after_max_failures_within_window_only():
    clock = Clock()
    b = CircuitBreaker(max_failures=3, window=10.0, reset_after=5.0, min_calls=1, clock=clock)
    fail(b, 2)
    clock.now += 11  # the first two fall out of the window
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN and b.trips == 1
    with pytest.raises(BreakerOpen) as info:
        b.acquire()
    assert info.value.retry_in == pytest.approx(5.0)


def test_breaker_half_opens_with_exactly_one_trial_and_heals():
    clock, changes = Clock(), []
    b = CircuitBreaker(max_failures=1, window=10.0, reset_after=5.0, min_calls=1, trial_calls=1, clock=clock,
                       on_change=changes.append)
    fail(b)
    clock.now += 5.0
    assert b.state is BreakerState.HALF_OPEN
    trial = b.acquire()
    assert trial.trial
    with pytest.raises(BreakerOpen):
        b.acquire()  # only one trial at a time
    b.record(trial, ok=True)
    assert b.state is BreakerState.CLOSED
    assert [(c.old.value, c.new.value) for c in changes] == [("closed", "open"), ("open", "half_open"),
                                                             ("half_open", "closed")]


def test_failed_trial_reopens_and_stale_outcomes_do_not_count():
    clock = Clock()
    b = CircuitBreaker(max_failures=2, window=10.0, reset_after=5.0, min_calls=1, trial_calls=1, clock=clock)
    early = b.acquire()  # begun while closed, finishes after the breaker opened
    fail(b, 2)
    b.record(early, ok=False)  # must not extend the open period or count anywhere
    clock.now += 5.0
    trial = b.acquire()
    b.record(trial, ok=False)
    assert b.state is BreakerState.OPEN and b.trips == 2
    b.reset()
    assert b.state is BreakerState.CLOSED
    b.record(b.acquire(), ok=True)


def test_breaker_fault_injection_rejects_the_given_fraction():
    values = iter([0.1, 0.9, 0.2, 0.8])
    b = CircuitBreaker(fail_fraction=0.5, rand=lambda: next(values))
    outcomes = []
    for _ in range(4):
        try:
            b.acquire()
            outcomes.append("ok")
        except BreakerOpen as exc:
            assert exc.injected
            outcomes.append("rejected")
    assert outcomes == ["rejected", "ok", "rejected", "ok"]
    with pytest.raises(SpecError):
        b.inject_faults(1.5)


def test_limiter_spaces_requests_and_pause_defers_everyone():
    clock = Clock()
    lim = RateLimiter(rpm=60, clock=clock)  # one per second, burst 1
    slots = [lim.reserve().at - clock.now for _ in range(3)]
    assert slots == pytest.approx([0.0, 1.0, 2.0])
    lim.pause(10.0)
    after = [lim.reserve().at - clock.now for _ in range(2)]
    assert after == pytest.approx([10.0, 11.0])  # no stampede at the end of the pause


def test_limiter_tokens_per_minute_and_settle():
    clock = Clock()
    lim = RateLimiter(tpm=1000, clock=clock)
    first = lim.reserve(600)
    assert lim.reserve(300).at == clock.now
    blocked = lim.reserve(200)  # 1100 > 1000: must wait until the first leaves the window
    assert blocked.at == pytest.approx(first.at + 60.0)
    lim2 = RateLimiter(tpm=1000, clock=clock)
    r = lim2.reserve(900)
    lim2.settle(r, 100)  # the provider counted fewer
    assert lim2.reserve(800).at == clock.now
    with pytest.raises(SpecError, match="tpm"):
        lim2.reserve(5000)


@settings(max_examples=150, deadline=None)
@given(rpm=st.integers(1, 600), burst=st.one_of(st.none(), st.integers(1, 20)),
       arrivals=st.lists(st.floats(0, 5.0), min_size=1, max_size=200),
       pauses=st.lists(st.tuples(st.integers(0, 199), st.floats(0, 3.0)), max_size=5))
def test_limiter_never_exceeds_rpm_in_any_window(rpm, burst, arrivals, pauses):
    """Whatever the arrival pattern and pauses: at most ``rpm`` slots in any 60 s, at most ``burst`` at once."""
    clock = Clock()
    lim = RateLimiter(rpm=rpm, burst=burst, clock=clock)
    pause_at = dict(pauses)
    slots = []
    for i, gap in enumerate(arrivals):
        clock.now += gap
        if i in pause_at:
            end = lim.pause(pause_at[i])
        slot = lim.reserve().at
        assert slot >= clock.now
        if i in pause_at:
            assert slot >= end
        slots.append(slot)
    assert slots == sorted(slots)
    for i, start in enumerate(slots):
        in_window = sum(1 for s in slots[i:] if s < start + 60.0)
        assert in_window <= rpm
        in_burst = sum(1 for s in slots[i:] if s == start)
        assert in_burst <= lim.burst


def test_breaker_needs_the_failure_rate_as_well_as_the_count():
    clock = Clock()
    b = CircuitBreaker(max_failures=3, window=10.0, failure_rate=0.5, clock=clock)
    for _ in range(10):
        b.record(b.acquire(), ok=True)
    fail(b, 5)  # 5 of 15 failed: a third, under the rate
    assert b.state is BreakerState.CLOSED
    fail(b, 5)  # 10 of 20: half
    assert b.state is BreakerState.OPEN


# --- the defaults: a breaker for outages, not for an error rate retries absorb (issue 20 §2) -------------


def call(breaker: CircuitBreaker, ok: bool) -> None:
    breaker.record(breaker.acquire(), ok=ok)


def test_default_breaker_rides_out_a_20pct_error_rate():
    clock, rng = Clock(), random.Random(7)
    b = CircuitBreaker(clock=clock)
    for _ in range(20_000):  # 200 calls a second for 100 s, one in five failing
        call(b, ok=rng.random() >= 0.2)
        clock.now += 0.005
    assert b.state is BreakerState.CLOSED and b.trips == 0


def test_default_breaker_needs_min_calls_before_it_may_open():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    fail(b, 19)  # every call failed, but 19 calls say little
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN


def test_an_outage_after_a_long_healthy_run_opens_at_once():
    """Old successes do not dilute an outage: at most the last window_calls calls count."""
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    for _ in range(4000):  # 400 calls a second, all fine
        call(b, ok=True)
        clock.now += 0.0025
    failed = 0
    while b.state is BreakerState.CLOSED:
        fail(b)
        failed += 1
        clock.now += 0.0025
    assert failed == 50  # half of the last 100 calls: 0.125 s after the outage began


def test_half_open_admits_trial_calls_and_closes_on_a_majority_of_successes():
    clock, changes = Clock(), []
    b = CircuitBreaker(clock=clock, on_change=changes.append)
    fail(b, 20)
    assert b.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as info:
        b.acquire()  # open: nothing goes
    assert info.value.retry_in == pytest.approx(5.0)
    clock.now += 5.0
    assert b.state is BreakerState.HALF_OPEN and b.trials_left() == 3
    trials = [b.acquire() for _ in range(3)]
    assert all(t.trial for t in trials) and b.trials_left() == 0
    with pytest.raises(BreakerOpen):
        b.acquire()  # beyond its trials, nothing goes
    b.record(trials[0], ok=True)
    b.record(trials[1], ok=False)
    assert b.state is BreakerState.HALF_OPEN  # one each: the third decides
    b.record(trials[2], ok=True)
    assert b.state is BreakerState.CLOSED
    assert changes[-1].reason == "2 of 3 trial calls succeeded"


def test_half_open_reopens_on_a_majority_of_failed_trials_and_a_cancelled_trial_goes_back():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    fail(b, 20)
    clock.now += 5.0
    first, second, third = (b.acquire() for _ in range(3))
    b.cancel(third)  # never sent: its place goes to another call
    assert b.trials_left() == 1
    fourth = b.acquire()
    b.record(first, ok=False)
    b.record(second, ok=False)
    assert b.state is BreakerState.OPEN and b.trips == 2
    b.record(fourth, ok=True)  # a trial of the last half-open period: too late to count
    assert b.state is BreakerState.OPEN and b.retry_in() == pytest.approx(5.0)


@pytest.mark.parametrize("bad", [{"min_calls": 0}, {"trial_calls": 0}, {"min_calls": 50, "window_calls": 40},
                                 {"timeout_grace": -1.0}])
def test_breaker_new_settings_are_checked(bad):
    with pytest.raises(SpecError):
        CircuitBreaker(**bad)


def test_pressure_is_the_recent_failure_share_over_the_opening_share():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    assert b.pressure() == 0.0
    for i in range(20):
        call(b, ok=i % 5 != 0)  # a fifth failed, against a breaker at half
    assert b.pressure() == pytest.approx(0.4)
    clock.now += 11.0  # out of the window
    assert b.pressure() == 0.0
    fail(b, 20)
    assert b.state is BreakerState.OPEN and b.pressure() == 1.0


@pytest.mark.parametrize("attempt", range(6))
def test_health_backoff_is_the_classic_backoff_at_full_pressure(attempt):
    for r in (0.0, 0.3, 0.999):
        assert health_backoff(attempt, 0.5, 20.0, 1.0, rand=lambda: r) == \
            pytest.approx(exponential_backoff(attempt, 0.5, 20.0, jitter=1.0, rand=lambda: 1.0 - r))
        assert health_backoff(attempt, 0.5, 20.0, 3.0, rand=lambda: r) == health_backoff(attempt, 0.5, 20.0, 1.0,
                                                                                       rand=lambda: r)


def test_health_backoff_retries_scattered_errors_soon_and_a_degraded_provider_late():
    longest = [health_backoff(a, 0.5, 20.0, 0.4, rand=lambda: 1.0) for a in range(5)]
    assert sum(longest) < 0.6  # five retries of one unlucky row, a fifth of all calls failing: well under 1 s
    assert health_backoff(0, 0.5, 20.0, 0.0, rand=lambda: 1.0) == 0.0
    delays = [health_backoff(4, 0.5, 20.0, p, rand=lambda: 1.0) for p in (0.2, 0.4, 0.6, 0.8, 1.0)]
    assert delays == sorted(delays) and delays[-1] == 8.0
    with pytest.raises(ValueError):
        health_backoff(-1, 0.5, 20.0, 0.5)


# --- quick failures among many slow calls (issue 25: 10,000 in flight, 5% answered 500 at once) ----------------


def test_quick_failures_do_not_open_it_while_the_slow_calls_sent_before_them_are_out():
    """10,000 calls out, 2 s each; the provider refuses 5% at once and throttles 5% (429, not a health
    failure): the first hundred answers are half failures, which is not half the calls."""
    clock, rng = Clock(), random.Random(3)
    b = CircuitBreaker(clock=clock)
    out = [b.acquire() for _ in range(10_000)]
    slow = []
    for permit in out:
        luck = rng.random()
        if luck < 0.1:
            b.record(permit, ok=luck >= 0.05)  # answered at once: a 500 (failed) or a 429 (not a health failure)
        else:
            slow.append(permit)
    assert b.state is BreakerState.CLOSED and b.pressure() < 0.2
    clock.now += 2.0
    for permit in slow:
        b.record(permit, ok=True)
    assert b.state is BreakerState.CLOSED and b.trips == 0


def test_an_outage_with_calls_out_opens_once_the_calls_before_the_failures_answer():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    before = [b.acquire() for _ in range(200)]  # out when the provider goes down
    fail(b, 40)  # new calls refused at once: the 200 before them may still be fine
    assert b.state is BreakerState.CLOSED
    for permit in before[:100]:
        b.record(permit, ok=False)  # ... they were not
    assert b.state is BreakerState.OPEN


def test_calls_given_back_no_longer_count_as_out():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    for permit in [b.acquire() for _ in range(500)]:
        b.cancel(permit)  # leases never used
    fail(b, 20)
    assert b.state is BreakerState.OPEN


def test_a_timeout_of_a_call_older_than_a_success_does_not_count():
    """1% of 10,000 calls hang until their timeout; the calls sent after them were answered: no outage."""
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    hung = [b.acquire() for _ in range(100)]
    for _ in range(900):
        call(b, ok=True)
    clock.now += 10.0
    for permit in hung:
        b.record(permit, ok=False, timed_out=True)
    assert b.state is BreakerState.CLOSED and b.pressure() == 0.0


def test_a_hang_outage_still_opens_it_timeout_grace_after_its_timeouts():
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    for _ in range(200):
        call(b, ok=True)
    hung = [b.acquire() for _ in range(60)]  # sent after the last success; nothing answers
    clock.now += 10.0
    for permit in hung:
        b.record(permit, ok=False, timed_out=True)
    assert b.state is BreakerState.CLOSED and b.verdict_in() == 2.0  # the later-sent ones may yet answer
    clock.now += 2.0
    assert b.state is BreakerState.OPEN and b.verdict_in() is None


def test_a_burst_of_timeouts_whose_later_calls_then_answer_does_not_open_it():
    """A process too busy to read its answers times out a burst of calls sent together; the calls sent
    after them succeed a moment later: the provider was answering, the breaker stays closed."""
    clock = Clock()
    b = CircuitBreaker(clock=clock)
    for _ in range(200):
        call(b, ok=True)
    burst = [b.acquire() for _ in range(80)]
    later = [b.acquire() for _ in range(80)]
    clock.now += 5.0
    for permit in burst:
        b.record(permit, ok=False, timed_out=True)
    clock.now += 0.5
    for permit in later:
        b.record(permit, ok=True)
    clock.now += 5.0
    assert b.state is BreakerState.CLOSED and b.pressure() == 0.0
    eager = CircuitBreaker(clock=clock, timeout_grace=0)  # no grace: the same burst opens it
    for _ in range(200):
        call(eager, ok=True)
    burst, later = [eager.acquire() for _ in range(80)], [eager.acquire() for _ in range(80)]
    for permit in burst:
        eager.record(permit, ok=False, timed_out=True)
    assert eager.state is BreakerState.OPEN


def test_a_429_for_a_request_sent_before_the_pause_began_does_not_pause_again():
    """The 429s of one burst reach the limiter over seconds: the first pauses, the rest were paid for."""
    clock = Clock()
    lim = RateLimiter(clock=clock)
    burst_sent = clock.now
    clock.now += 2.0
    assert lim.pause(1.0, sent_at=burst_sent) == pytest.approx(clock.now + 1.0)
    clock.now += 0.8
    assert lim.pause(1.0, sent_at=burst_sent) == pytest.approx(clock.now + 0.2)  # the same pause
    clock.now += 2.0
    assert lim.paused_for == 0.0 and lim.pause(1.0, sent_at=burst_sent) < clock.now  # long over: still paid for
    sent_after = clock.now
    clock.now += 0.5
    assert lim.pause(1.0, sent_at=sent_after) == pytest.approx(clock.now + 1.0)  # a new congestion: a new pause
    assert lim.pause(3.0) == pytest.approx(clock.now + 3.0)  # (no sending time: as ever)
