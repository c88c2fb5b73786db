"""A GenServer's helper thread is linked to it (OTP's spawn_link): its crash is the actor's crash, seen
by the supervisor, with the thread's reason, and restarted per the restart type; under every base."""

from __future__ import annotations

import time

import pytest

from supervision import ChildSpec, SupervisorSpec
from tests.conftest import wait_until
from tests.supervision.actors import Linked


def lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def child_ref(sup, cid):
    return {i.id: i.ref for i in sup.which_children()}.get(cid)


@pytest.mark.parametrize("order, reason", [
    ("raise", "thread helper crashed: RuntimeError: thread boom"),
    ("interrupt", "thread helper crashed: KeyboardInterrupt: thread interrupted"),
])
def test_a_crashing_thread_takes_its_actor_down_and_the_supervisor_restarts_it(rt, tmp_path, order, reason):
    events = []
    rt.subscribe(events.append)
    log = tmp_path / "terminate.log"
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="l", start=Linked, args=(str(log),))])
    old = sup.child("l")
    assert old.call(order) == "told"
    # the supervisor restarts it (under local, the crash is handled at the next call into the system)
    assert wait_until(lambda: (r := child_ref(sup, "l")) is not None and r != old, 10.0)
    assert wait_until(lambda: any(e.kind == "restart" and e.child == "l" for e in events))
    exits = [e for e in events if e.kind == "exit" and e.child == "l"]
    assert len(exits) == 1 and not exits[0].normal and exits[0].reason == reason
    assert lines(log) == [reason]  # terminate ran once, with the thread's reason
    assert sup.child("l").call("pid")  # the new incarnation answers (and has a helper thread of its own)


def test_a_thread_that_returns_leaves_its_actor_running(rt, tmp_path):
    events = []
    rt.subscribe(events.append)
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="l", start=Linked,
                                                                      args=(str(tmp_path / "t.log"),))])
    ref = sup.child("l")
    pid = ref.call("pid")
    assert ref.call("return") == "told"
    time.sleep(0.3)
    assert ref.call("pid") == pid and child_ref(sup, "l") == ref
    assert not [e for e in events if e.kind == "exit"]


def test_a_thread_failing_while_its_actor_stops_is_no_crash(rt, tmp_path):
    events = []
    rt.subscribe(events.append)
    log = tmp_path / "t.log"
    sup = rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="l", start=Linked, args=(str(log),),
                                                                      kwargs={"raise_on_stop": True})])
    sup.terminate_child("l")
    assert lines(log) == ["shutdown"]
    assert wait_until(lambda: [e for e in events if e.kind == "exit" and e.child == "l"])
    time.sleep(0.3)
    exits = [e for e in events if e.kind == "exit" and e.child == "l"]
    assert len(exits) == 1 and exits[0].normal and exits[0].reason == "shutdown"
    assert child_ref(sup, "l") is None  # stopped, not restarted
