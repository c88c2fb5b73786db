"""A process that owns a runtime, for tests that kill or interrupt the owner (run with -m)."""

from __future__ import annotations

import sys
import time

from supervision import ActorRuntime, ChildSpec, SupervisorSpec
from tests.supervision.actors import Recorder


def main() -> None:
    name, log = sys.argv[1], sys.argv[2]
    with ActorRuntime(base="multiproc", name=name) as rt:
        children = [ChildSpec(id=x, start=Recorder, kwargs={"path": log, "tag": x}) for x in ("a", "b", "c")]
        sup = rt.start_supervisor(SupervisorSpec(), children, name="top")
        pids = [info.ref.call("pid") for info in sup.which_children()]
        print("ready", *pids, flush=True)
        time.sleep(120)


if __name__ == "__main__":
    main()
