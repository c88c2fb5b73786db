"""A tour of supervision: start a tree of real processes, crash and kill children, watch OTP restart them.

    ./run tour            (or: python examples/supervision_tour.py [--base local|multiproc])
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time

import structlog

from supervision import ActorRuntime, CallFailed, ChildSpec, LifecycleEvent, SupervisorSpec
from tour_actors import Worker


def show(event: LifecycleEvent) -> None:
    extra = f"  pid={event.pid}" if event.pid else ""
    print(f"  event: {event.summary()}{extra}", flush=True)


def tree(sup, indent: str = "  ") -> None:
    for info in sup.which_children():
        pid = info.ref.call("pid") if info.ref is not None and info.kind.value == "worker" else None
        state = "not running" if info.ref is None else (f"pid {pid}" if pid else "running")
        print(f"{indent}{info.id:<10} {info.kind.value:<10} {info.restart.value:<10} {state}")
        if info.ref is not None and info.kind.value == "supervisor":
            tree(info.ref, indent + "    ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="multiproc", choices=["local", "multiproc", "tcp"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    t0 = time.monotonic()
    with ActorRuntime(base=args.base, name="tour") as rt:
        rt.subscribe(show)
        print(f"1. start a tree on the {args.base!r} base (one process per actor under multiproc)")
        pool = ChildSpec(id="pool", start=SupervisorSpec(strategy="one_for_all", intensity=2, period=10),
                         children=[ChildSpec(id=f"w{i}", start=Worker, kwargs={"name": f"w{i}"}) for i in (1, 2)])
        fragile = ChildSpec(id="fragile", start=SupervisorSpec(intensity=0),
                            children=[ChildSpec(id="f", start=Worker, kwargs={"name": "f"})])
        top = rt.start_supervisor(SupervisorSpec(strategy="one_for_one", intensity=5, period=10),
                                  [ChildSpec(id="cache", start=Worker, kwargs={"name": "cache"}, name="cache"),
                                   pool, fragile], name="top")
        tree(top)

        print("\n2. a handler raises: the caller gets CallFailed, one_for_all restarts the whole pool")
        try:
            top.child("pool").child("w1").call("crash")
        except CallFailed as exc:
            print(f"  caller sees: {exc}")
        time.sleep(0.5)

        if args.base != "local":
            print("\n3. kill -9 the cache's process: seen as an abnormal exit, restarted (one_for_one)")
            os.kill(rt.whereis("cache").call("pid"), signal.SIGKILL)
            time.sleep(1.5)
            print(f"  whereis('cache') answers: {rt.whereis('cache').call('hello')}")

        print("\n4. 'fragile' allows 0 restarts: its child's crash escalates; 'top' restarts the subtree")
        try:
            top.child("fragile").child("f").call("crash")
        except CallFailed:
            pass
        time.sleep(0.5)
        print("\n5. the tree now")
        tree(top)
        print("\n6. leaving the with-block: children stop in reverse start order, no process left behind")
    print(f"\ndone in {time.monotonic() - t0:.2f}s")


if __name__ == "__main__":
    main()
