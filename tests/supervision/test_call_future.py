"""call_future: a call whose reply resolves a future, with no thread waiting (OTP's send_request), on every
base: deferred replies come in order of their timers, errors and exits reach the future, a deadline holds,
and closing the runtime fails what is still pending."""

from __future__ import annotations

import threading
import time

import pytest

from supervision import ActorExited, ActorRuntime, CallFailed, CallTimeout, ChildSpec, Shutdown, SupervisorSpec

from .actors import Later


def later(rt):
    return rt.start_supervisor(SupervisorSpec(intensity=5), [ChildSpec(id="later", start=Later)]).child("later")


def test_hundreds_of_deferred_replies_pending_on_no_threads(rt):
    ref = later(rt)
    threads = threading.active_count()
    start = time.monotonic()
    futures = [ref.call_future(("after", 0.5 if i % 2 else 0.2, i), timeout=30) for i in range(300)]
    assert threading.active_count() <= threads + 2  # one driver (and Thespian's own), not a thread a call
    assert [f.result(timeout=30) for f in futures] == list(range(300))
    assert time.monotonic() - start < 10
    assert ref.call_future("now").result(timeout=10) == "now"  # an immediate reply too


def test_a_reply_there_before_call_future_returns_starts_no_reply_driver():
    """The local base runs the actor in the calling thread: an immediate reply's future is settled before
    ``call_future`` returns, and no driver thread is started for it (one a call had cost ~0.2 ms)."""
    with ActorRuntime(base="local", name="t") as rt:
        ref = later(rt)
        future = ref.call_future("now", timeout=10)
        assert future.done() and future.result() == "now"
        assert rt._driver is None
        assert not [t for t in threading.enumerate() if t.name.startswith("supervision-replies")]
        deferred = ref.call_future(("after", 0.1, "later"), timeout=10)  # one that waits does get the driver
        assert not deferred.done() and deferred.result(timeout=10) == "later"


def test_a_failing_handler_a_deadline_and_an_exited_actor_reach_the_future(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=5), [ChildSpec(id="later", start=Later)])
    ref = sup.child("later")
    with pytest.raises(CallTimeout):
        ref.call_future(("after", 30, "never"), timeout=0.3).result(timeout=10)
    pending = ref.call_future(("after", 30, "never"), timeout=60)
    sup.terminate_child("later")  # its pending call does not wait out its 60 s deadline
    start = time.monotonic()
    with pytest.raises(ActorExited):
        pending.result(timeout=10)
    assert time.monotonic() - start < 5
    sup.restart_child("later")
    with pytest.raises(CallFailed, match="boom"):
        sup.child("later").call_future("crash").result(timeout=10)


def test_closing_the_runtime_fails_what_is_pending(base):
    rt = ActorRuntime(base=base, name="t").start()
    try:
        future = later(rt).call_future(("after", 30, "never"), timeout=60)
    finally:
        rt.close()
    with pytest.raises(Shutdown):
        future.result(timeout=10)


def test_a_call_to_an_actor_that_exits_as_it_is_sent_fails_within_seconds(rt):
    """The reply driver never waits on a transmit: a call sent while its actor exits (Thespian's ``tell``
    then waited up to a minute, and no deadline or liveness check ran meanwhile) fails with ActorExited."""
    for i in range(3):
        sup = rt.start_supervisor(SupervisorSpec(intensity=5), [ChildSpec(id="later", start=Later)], name=f"top{i}")
        ref = sup.child("later")
        pending = ref.call_future(("after", 30, "never"), timeout=60)
        sup.terminate_child("later")
        start = time.monotonic()
        with pytest.raises(ActorExited):
            pending.result(timeout=10)
        assert time.monotonic() - start < 5
        stray = ref.call_future("now", timeout=60)  # sent after the exit: fails too
        with pytest.raises(ActorExited):
            stray.result(timeout=10)
        rt.stop_supervisor(f"top{i}")


def test_an_unanswered_liveness_question_is_no_verdict_the_call_waits_for_its_reply(monkeypatch):
    """A call with no reply yet asks the root whether its actor lives; when that question goes unanswered
    (the root stopped here; a link to the leader down, on a host) the call keeps waiting for its own reply
    within its own deadline, instead of failing with the question's CallTimeout."""
    import os
    import signal

    from supervision import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "LIVENESS_TIMEOUT", 0.5)
    rt = ActorRuntime(base="multiproc", name="t").start()
    try:
        ref = later(rt)
        root_pid = rt._root_pid  # (the root supervisor's process)
        os.kill(root_pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            assert ref.call(("after", 2.0, "answered"), timeout=20) == "answered"
            assert time.monotonic() - start < 10
        finally:
            os.kill(root_pid, signal.SIGCONT)
        with pytest.raises(CallTimeout):  # its own deadline still holds
            ref.call(("after", 30, "never"), timeout=1.0)
    finally:
        rt.close()
