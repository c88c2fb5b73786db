"""Supervision overheads, same run, same machine: call vs raw ask, restart latency, start+stop per base."""

from __future__ import annotations

import logging
import os
import signal
import statistics
import time

import structlog
from thespian.actors import ActorExitRequest, ActorSystem

from supervision import ActorRuntime, CallFailed, ChildSpec, SupervisorSpec
from supervision.runtime import BASES
from supervision._thespian import log_defs as _log_defs
from supervision.tcp import free_port
from benchmarks.raw_actor import RawEcho
from tests.supervision.actors import Counter

N_CALLS = {"local": 20000, "multiproc": 2000}


def raw_ask(base: str, n: int) -> float:
    caps = {} if base == "local" else {"Admin Port": free_port()}
    asys = ActorSystem(BASES[base], capabilities=caps, transientUnique=True, logDefs=_log_defs())
    try:
        actor = asys.createActor(RawEcho)
        for i in range(100):
            asys.ask(actor, i, 5)
        t0 = time.perf_counter()
        for i in range(n):
            assert asys.ask(actor, i, 5) == i + 1
        elapsed = time.perf_counter() - t0
        asys.tell(actor, ActorExitRequest())
    finally:
        asys.shutdown()
    return elapsed / n


def gen_server_call(base: str, n: int) -> float:
    with ActorRuntime(base=base, name="bench") as rt:
        sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
        ref = sup.child("c")
        for _ in range(100):
            ref.call("get")
        t0 = time.perf_counter()
        for _ in range(n):
            ref.call("incr")
        return (time.perf_counter() - t0) / n


def restart_latency(base: str, rounds: int = 20, kill: bool = False) -> float:
    """Crash (or kill -9) -> the restarted child answers a call; median seconds."""
    samples = []
    with ActorRuntime(base=base, name="bench") as rt:
        sup = rt.start_supervisor(SupervisorSpec(intensity=rounds * 2, period=60), [ChildSpec(id="c", start=Counter)])
        for _ in range(rounds):
            old = sup.child("c")
            pid = old.call("pid") if kill else 0
            t0 = time.perf_counter()
            if kill:
                os.kill(pid, signal.SIGKILL)
            else:
                try:
                    old.call("crash")
                except CallFailed:
                    pass
            while True:
                ref = sup.child("c")
                if ref is not None and ref != old:
                    ref.call("get")
                    break
                time.sleep(0.001)
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def start_stop(base: str, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with ActorRuntime(base=base, name="bench"):
            pass
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run() -> str:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    rows = ["| base | raw Thespian ask | GenServer call | ratio (goal ≤ 1.5×) | restart after crash | "
            "restart after kill -9 | runtime start+stop |", "|---|---|---|---|---|---|---|"]
    for base in ("local", "multiproc"):
        raw = raw_ask(base, N_CALLS[base])
        call = gen_server_call(base, N_CALLS[base])
        crash = restart_latency(base)
        killed = f"{restart_latency(base, 10, kill=True) * 1e3:.1f} ms" if base != "local" else "n/a (one process)"
        rows.append(f"| {base} | {raw * 1e6:.1f} µs | {call * 1e6:.1f} µs | {call / raw:.2f}× | "
                    f"{crash * 1e3:.2f} ms | {killed} | {start_stop(base) * 1e3:.1f} ms |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(run())
