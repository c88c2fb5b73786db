"""The local base with many callers waiting for deferred replies: one of them polls for the timers that fall
due, the others sleep until their reply is parked (before, each polled every 2 ms: a compile queued behind a
slow model spent more CPU waiting than working)."""

from __future__ import annotations

import threading

from supervision import ActorRuntime, ChildSpec, SupervisorSpec
from supervision.messages import Nudge
from tests.supervision.actors import Later


def test_twenty_waiting_callers_poll_as_one_and_each_gets_its_own_reply():
    with ActorRuntime(base="local", name="waiters") as rt:
        sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="later", start=Later, kwargs={"after": 0.4})])
        ref = sup.child("later")
        system = rt._need_system()
        nudges, tell = [], system.tell

        def counting(address, message):
            if isinstance(message, Nudge):
                nudges.append(1)
            return tell(address, message)

        system.tell = counting
        answers: dict[int, object] = {}
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, ref.call(i, timeout=10)))
                   for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert answers == {i: i for i in range(20)}  # every caller its own reply, none lost or swapped
        # ~0.4 s of waiting: one poller at LOCAL_POLL (2 ms) makes up to ~200 nudges; twenty made 1,366 here under load
        assert len(nudges) < 600, len(nudges)
