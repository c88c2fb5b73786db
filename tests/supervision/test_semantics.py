"""OTP semantics on real actor systems, under every supported base."""

from __future__ import annotations

import time

import pytest

from supervision import (ActorExited, CallFailed, CallTimeout, ChildSpec, FailedToStartChild, SpecError,
                         SupervisionError, SupervisorSpec)
from tests.conftest import wait_until
from tests.supervision.actors import Counter, Recorder


def refs(sup):
    return {i.id: i.ref for i in sup.which_children()}


def restarted(sup, cid, old, timeout=10.0):
    """Wait until child ``cid`` runs under a new ref (immediate under local)."""
    return wait_until(lambda: (r := refs(sup).get(cid)) is not None and r != old, timeout)


def lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def test_call_cast_and_crash_restart(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="c", start=Counter, kwargs={"start": 5})])
    ref = sup.child("c")
    assert ref.call("incr") == 6
    ref.cast("reset")
    assert wait_until(lambda: ref.call("get") == 0)
    with pytest.raises(CallFailed) as info:
        ref.call("crash")
    assert info.value.remote_type == "ValueError" and info.value.remote_message == "boom"
    assert restarted(sup, "c", ref)
    assert sup.child("c").call("get") == 5  # fresh state after restart


def test_handler_exception_is_one_exit_seen_once(rt):
    seen = []
    rt.subscribe(seen.append)
    sup = rt.start_supervisor(SupervisorSpec(intensity=5), [ChildSpec(id="c", start=Counter)])
    old = sup.child("c")
    with pytest.raises(CallFailed):
        old.call("crash")
    assert restarted(sup, "c", old)
    time.sleep(0.3 if not rt.is_local else 0)
    exits = [e for e in seen if e.kind == "exit" and e.child == "c"]
    assert len(exits) == 1 and not exits[0].normal and "boom" in exits[0].reason
    assert len([e for e in seen if e.kind == "restart" and e.child == "c"]) == 1


def test_terminate_runs_on_crash_and_shutdown(rt, tmp_path):
    log = tmp_path / "t.log"
    with_rec = [ChildSpec(id="r", start=Recorder, kwargs={"path": str(log), "tag": "r"})]
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), with_rec)
    ref = sup.child("r")
    with pytest.raises(CallFailed):
        ref.call("crash")
    assert wait_until(lambda: lines(log) == ["r:ValueError: recorder boom"])
    assert restarted(sup, "r", ref)
    sup.terminate_child("r")
    assert lines(log)[-1] == "r:shutdown"


def test_stop_normal_exit_by_restart_type(rt):
    children = [ChildSpec(id="p", start=Counter, restart="permanent"),
                ChildSpec(id="tr", start=Counter, restart="transient"),
                ChildSpec(id="tm", start=Counter, restart="temporary")]
    sup = rt.start_supervisor(SupervisorSpec(intensity=5), children)
    before = refs(sup)
    for cid in ("p", "tr", "tm"):
        assert before[cid].call("stop") == "stopping"  # reply is sent before the exit
    assert restarted(sup, "p", before["p"])
    assert wait_until(lambda: [i.id for i in sup.which_children()] == ["p", "tr"])
    # transient after a normal exit: spec kept, not running (its exit may come after the temporary's)
    assert wait_until(lambda: refs(sup)["tr"] is None)
    counts = sup.count_children()
    assert (counts.specs, counts.active, counts.workers, counts.supervisors) == (2, 1, 2, 0)


def test_transient_restarted_after_abnormal_exit(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=5), [ChildSpec(id="tr", start=Counter, restart="transient")])
    old = sup.child("tr")
    with pytest.raises(CallFailed):
        old.call("crash")
    assert restarted(sup, "tr", old)


def test_failed_start_stops_started_in_reverse(rt, tmp_path):
    log = tmp_path / "t.log"
    children = [ChildSpec(id=x, start=Recorder, kwargs={"path": str(log), "tag": x}) for x in ("a", "b")]
    children.append(ChildSpec(id="bad", start=Counter, kwargs={"fail": True}))
    with pytest.raises(FailedToStartChild) as info:
        rt.start_supervisor(SupervisorSpec(), children, name="s")
    assert info.value.id == "bad" and "init refused" in info.value.reason
    assert lines(log) == ["b:shutdown", "a:shutdown"]
    assert rt.whereis("s") is None


def test_one_for_all_restarts_everyone_in_order(rt, tmp_path):
    log = tmp_path / "t.log"
    children = [ChildSpec(id=x, start=Recorder, kwargs={"path": str(log), "tag": x}) for x in ("a", "b", "c")]
    sup = rt.start_supervisor(SupervisorSpec(strategy="one_for_all", intensity=3), children)
    old = refs(sup)
    with pytest.raises(CallFailed):
        old["b"].call("crash")
    assert wait_until(lambda: all(r is not None and r != old[k] for k, r in refs(sup).items()))
    assert lines(log) == ["b:ValueError: recorder boom", "c:shutdown", "a:shutdown"]


def test_rest_for_one_restarts_later_siblings(rt, tmp_path):
    log = tmp_path / "t.log"
    children = [ChildSpec(id=x, start=Recorder, kwargs={"path": str(log), "tag": x}) for x in ("a", "b", "c", "d")]
    sup = rt.start_supervisor(SupervisorSpec(strategy="rest_for_one", intensity=3), children)
    old = refs(sup)
    with pytest.raises(CallFailed):
        old["b"].call("crash")
    assert wait_until(lambda: all(r is not None and r != old[k] for k, r in refs(sup).items() if k != "a"))
    assert refs(sup)["a"] == old["a"]
    assert lines(log) == ["b:ValueError: recorder boom", "d:shutdown", "c:shutdown"]


def test_simple_one_for_one(rt):
    sup = rt.start_supervisor(SupervisorSpec(strategy="simple_one_for_one", intensity=3),
                              [ChildSpec(id="w", start=Counter, restart="transient")])
    assert sup.which_children() == []
    one = sup.start_child({"start": 10})
    two = sup.start_child(kwargs={"start": 20})
    assert (one.id, two.id) == ("w-1", "w-2")
    assert one.ref.call("get") == 10 and two.ref.call("get") == 20
    with pytest.raises(CallFailed):
        one.ref.call("crash")
    assert restarted(sup, "w-1", one.ref)
    sup.terminate_child("w-2")
    assert [i.id for i in sup.which_children()] == ["w-1"]
    with pytest.raises(SpecError):
        sup.start_child(ChildSpec(id="x", start=Counter))


def test_intensity_exceeded_escalates_to_root(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=1, period=5.0), [ChildSpec(id="c", start=Counter)], name="top")
    ref = sup.child("c")
    with pytest.raises(CallFailed):
        ref.call("crash")
    assert restarted(sup, "c", ref)
    with pytest.raises(CallFailed):
        sup.child("c").call("crash")
    assert wait_until(lambda: rt.failures)
    failure = rt.failures[0]
    assert failure.name == "top" and "reached_max_restart_intensity" in failure.reason
    with pytest.raises(SupervisionError):
        sup.which_children()
    assert rt.whereis("top") is None


def test_nested_supervisor_escalation_restarts_subtree(rt):
    inner = ChildSpec(id="inner", start=SupervisorSpec(intensity=0), children=[ChildSpec(id="c", start=Counter)])
    top = rt.start_supervisor(SupervisorSpec(intensity=3), [inner, ChildSpec(id="other", start=Counter)])
    inner_ref = top.child("inner")
    other = top.child("other")
    c = inner_ref.child("c")
    with pytest.raises(CallFailed):
        c.call("crash")
    assert restarted(top, "inner", inner_ref)
    new_inner = top.child("inner")
    assert new_inner.child("c").call("get") == 0
    assert top.child("other") == other  # one_for_one: sibling untouched
    assert rt.failures == []


def test_dynamic_children(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="a", start=Counter)])
    info = sup.start_child(ChildSpec(id="b", start=Counter, kwargs={"start": 7}))
    assert info.ref.call("get") == 7
    with pytest.raises(SpecError, match="duplicate child id"):
        sup.start_child(ChildSpec(id="b", start=Counter))
    with pytest.raises(FailedToStartChild):
        sup.start_child(ChildSpec(id="bad", start=Counter, kwargs={"fail": True}))
    assert [i.id for i in sup.which_children()] == ["a", "b"]
    sup.terminate_child("b")
    assert refs(sup)["b"] is None
    with pytest.raises(SpecError, match="running"):
        sup.delete_child("a")
    assert sup.restart_child("b").ref.call("get") == 7
    sup.terminate_child("b")
    sup.delete_child("b")
    assert [i.id for i in sup.which_children()] == ["a"]
    with pytest.raises(SpecError, match="no child"):
        sup.terminate_child("zzz")


def test_registry(rt):
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="c", start=Counter, name="counter")],
                              name="top")
    assert rt.whereis("top") == sup
    named = rt.whereis("counter")
    assert named.call("incr") == 1
    with pytest.raises(SpecError, match="already registered"):
        rt.start_supervisor(SupervisorSpec(), [], name="top")
    with pytest.raises(SpecError, match="already registered"):
        rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="x", start=Counter, name="counter")], name="other")
    with pytest.raises(CallFailed):
        named.call("crash")
    assert wait_until(lambda: (r := rt.whereis("counter")) is not None and r != named)


def test_significant_child_auto_shutdown(rt):
    spec = SupervisorSpec(auto_shutdown="any_significant", intensity=3)
    children = [ChildSpec(id="main", start=Counter, restart="transient", significant=True),
                ChildSpec(id="helper", start=Counter)]
    sup = rt.start_supervisor(spec, children, name="job")
    sup.child("main").call("stop")
    assert wait_until(lambda: rt.whereis("job") is None)
    assert rt.failures == []  # an auto shutdown is a normal exit


def test_all_significant_waits_for_all(rt):
    spec = SupervisorSpec(auto_shutdown="all_significant", intensity=3)
    children = [ChildSpec(id=x, start=Counter, restart="transient", significant=True) for x in ("a", "b")]
    sup = rt.start_supervisor(spec, children, name="job")
    sup.child("a").call("stop")
    assert wait_until(lambda: refs(sup)["a"] is None)
    assert rt.whereis("job") is not None
    sup.child("b").call("stop")
    assert wait_until(lambda: rt.whereis("job") is None)


def test_brutal_kill_skips_terminate(rt, tmp_path):
    log = tmp_path / "t.log"
    sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="r", start=Recorder, shutdown="brutal_kill",
                                                           kwargs={"path": str(log), "tag": "r"})])
    sup.terminate_child("r")
    assert refs(sup)["r"] is None
    assert lines(log) == []


def test_call_to_dead_actor_raises_promptly(rt):
    sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter, restart="temporary")])
    ref = sup.child("c")
    sup.terminate_child("c")
    started = time.monotonic()
    with pytest.raises(ActorExited):
        ref.call("get", timeout=10.0)
    assert time.monotonic() - started < 2.0


def test_call_without_reply_times_out(rt):
    sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
    with pytest.raises(CallTimeout):
        sup.child("c").call("noreply", timeout=0.5)
    assert sup.child("c").call("incr") == 1  # a late or missing reply never crosses later calls


def test_restart_backoff_delays_restart(rt):
    spec = SupervisorSpec(intensity=5, min_backoff=0.3, max_backoff=1.0, jitter=0.0)
    sup = rt.start_supervisor(spec, [ChildSpec(id="c", start=Counter)])
    old = sup.child("c")
    t0 = time.monotonic()
    with pytest.raises(CallFailed):
        old.call("crash")
    assert restarted(sup, "c", old, timeout=5.0)
    assert time.monotonic() - t0 >= 0.3


def test_exception_inside_with_stops_tree(base, tmp_path):
    from supervision import ActorRuntime

    log = tmp_path / "t.log"
    with pytest.raises(ZeroDivisionError):
        with ActorRuntime(base=base, name="x") as rt:
            children = [ChildSpec(id=x, start=Recorder, kwargs={"path": str(log), "tag": x}) for x in ("a", "b")]
            rt.start_supervisor(SupervisorSpec(), children)
            1 / 0
    assert lines(log) == ["b:shutdown", "a:shutdown"]
