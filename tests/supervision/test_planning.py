"""The pure decisions, checked against the OTP manual's rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervision.planning import record_restart, restart_plan, should_auto_shutdown, should_restart
from supervision.resilience.backoff import exponential_backoff
from supervision.specs import AutoShutdown, Restart, Strategy


def test_intensity_one_in_five_seconds():
    history, exceeded = record_restart((), 0.0, 1, 5.0)
    assert not exceeded
    history, exceeded = record_restart(history, 4.9, 1, 5.0)
    assert exceeded
    history, exceeded = record_restart((0.0,), 5.0, 1, 5.0)
    assert not exceeded and history == (5.0,)


@given(st.lists(st.floats(0, 100), max_size=30), st.integers(0, 5), st.floats(0.1, 20))
def test_intensity_counts_restarts_in_window(times, intensity, period):
    history: tuple = ()
    ordered = sorted(times)
    for i, now in enumerate(ordered):
        history, exceeded = record_restart(history, now, intensity, period)
        in_window = [t for t in ordered[: i + 1] if now - t < period]
        assert exceeded == (len(in_window) > intensity)
        assert all(now - t < period for t in history)


def test_restart_types():
    assert should_restart(Restart.PERMANENT, True) and should_restart(Restart.PERMANENT, False)
    assert should_restart(Restart.TRANSIENT, False) and not should_restart(Restart.TRANSIENT, True)
    assert not should_restart(Restart.TEMPORARY, False)


def test_plans():
    order = ["a", "b", "c", "d"]
    running = {"a", "c", "d"}
    assert restart_plan(Strategy.ONE_FOR_ONE, order, running, "b").start == ("b",)
    p = restart_plan(Strategy.ONE_FOR_ALL, order, running, "b", temporary={"c"})
    assert p.stop == ("d", "c", "a") and p.start == ("a", "b", "d")
    p = restart_plan(Strategy.REST_FOR_ONE, order, running, "b")
    assert p.stop == ("d", "c") and p.start == ("b", "c", "d")


def test_auto_shutdown():
    assert not should_auto_shutdown(AutoShutdown.NEVER, True, 0)
    assert should_auto_shutdown(AutoShutdown.ANY_SIGNIFICANT, True, 3)
    assert not should_auto_shutdown(AutoShutdown.ALL_SIGNIFICANT, True, 1)
    assert should_auto_shutdown(AutoShutdown.ALL_SIGNIFICANT, True, 0)
    assert not should_auto_shutdown(AutoShutdown.ANY_SIGNIFICANT, False, 0)


@given(st.integers(0, 100), st.floats(0.001, 5), st.floats(5, 60), st.floats(0, 1), st.floats(0, 1))
def test_backoff_bounds(attempt, base, cap, jitter, r):
    delay = exponential_backoff(attempt, base, cap, jitter, rand=lambda: r)
    full = min(cap, base * 2 ** attempt)
    assert full * (1 - jitter) - 1e-9 <= delay <= full + 1e-9
