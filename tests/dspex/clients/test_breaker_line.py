"""The breaker's line: which waiting requests go, fail or wait, decided from the facts alone."""

from __future__ import annotations

from dspex.clients.breaker_line import BreakerLine
from supervision.resilience import BreakerState

OPEN, HALF, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


def line_of(*deadlines: float) -> BreakerLine:
    line = BreakerLine()
    for i, deadline in enumerate(deadlines):
        line.join(f"r{i}", deadline)
    return line


def test_open_lets_nobody_go_and_looks_again_when_trials_may_pass():
    line = line_of(160.0, 161.0)
    turn = line.turn(100.0, OPEN, 0, retry_in=4.0)
    assert (turn.expired, turn.go, turn.check_in) == ((), (), 4.0)
    assert list(line) == ["r0", "r1"]


def test_half_open_lets_as_many_go_as_it_has_trials_oldest_first():
    line = line_of(160.0, 161.0, 162.0, 163.0)
    turn = line.turn(100.0, HALF, 3, retry_in=0.0)
    assert turn.go == ("r0", "r1", "r2") and list(line) == ["r3"]
    assert turn.check_in == 63.0  # then only its deadline (or a breaker change) brings it up again
    line.join("r0", 160.0)  # a failed trial retries at the end of the line
    assert list(line) == ["r3", "r0"]


def test_closed_lets_everybody_go():
    line = line_of(160.0, 161.0)
    turn = line.turn(100.0, CLOSED, 0, retry_in=0.0)
    assert (turn.go, turn.check_in, len(line)) == (("r0", "r1"), None, 0)


def test_requests_past_max_wait_fail_even_while_trials_go():
    line = line_of(100.0, 130.0, 99.0)
    turn = line.turn(100.0, HALF, 1, retry_in=0.0)
    assert turn.expired == ("r0", "r2") and turn.go == ("r1",) and len(line) == 0


def test_the_next_look_is_the_earliest_of_the_reopening_and_a_deadline():
    line = line_of(102.0, 150.0)
    assert line.turn(100.0, OPEN, 0, retry_in=5.0).check_in == 2.0


def test_requests_of_a_gone_holder_leave_the_line():
    line = line_of(160.0, 161.0, 162.0)
    line.drop(lambda r: r == "r1")
    assert list(line) == ["r0", "r2"]
