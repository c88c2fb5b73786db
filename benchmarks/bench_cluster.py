"""The cluster's plumbing, measured (root only: hosts are network namespaces on this machine; DSPy has no
cluster, so there is no side by side here):

* joining: N hosts (``python -m supervision.node``) started *before* their leader, then the leader: seconds
  from the leader being up until all N have joined (Thespian alone retries after 7 min 22 s);
* ``rt.nodes()``: the wall of asking every host whether it is up, with all up and with one host stopped
  (SIGSTOP: it is listed as unreachable after the probe's 1 s timeout, the others still answer);
* the authenticated channel: a round trip of a small frame through two ``SecureSocket``s against two plain
  sockets (the cost of the handshake's records: one HMAC-SHA256 a frame each way), and a call to an actor
  on a multiproc runtime.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import sys
import threading
import time

from supervision import ActorRuntime, ChildSpec, Cookie, SupervisorSpec, channel

NODE_PORT = 19500
SIZES = (8, 32)


def join_and_probe(n_hosts: int) -> dict | None:
    from dspex.testing.netns import Network, NetworkUnavailable

    try:
        net = Network(n_hosts)
    except NetworkUnavailable:
        return None
    with net:
        leader_port = NODE_PORT - 1
        leader = f"{net.leader_ip}:{leader_port}"
        launched = time.monotonic()
        procs = [net.spawn(i, [sys.executable, "-m", "supervision.node", "--leader", leader, "--bind", h.ip,
                               "--port", str(NODE_PORT)]) for i, h in enumerate(net.hosts)]
        for proc in procs:
            while not proc.stdout.readline().startswith("ready"):
                pass
        ready = time.monotonic() - launched
        members = {f"{h.ip}:{NODE_PORT}" for h in net.hosts}
        with ActorRuntime("tcp", "bench-lead", bind_host=net.leader_ip, admin_port=leader_port,
                          peers=[h.ip for h in net.hosts]) as rt:
            up = time.monotonic()
            while not members <= set(rt.convention_members()) and time.monotonic() - up < 120:
                time.sleep(0.1)
            joined = time.monotonic() - up if members <= set(rt.convention_members()) else None
            probes = []
            for _ in range(3):
                t = time.monotonic()
                infos = rt.nodes()
                probes.append(time.monotonic() - t)
            all_up = sum(i.state.value == "up" for i in infos)
            stopped = net.pids(n_hosts - 1)
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            try:
                t = time.monotonic()
                infos = rt.nodes(timeout=1.0)
                stopped_probe = time.monotonic() - t
            finally:
                for pid in stopped:
                    os.kill(pid, signal.SIGCONT)
            unreachable = sum(i.state.value == "unreachable" for i in infos)
    return {"hosts": n_hosts, "ready": ready, "joined": joined, "probe": statistics.median(probes),
            "all_up": all_up, "stopped_probe": stopped_probe, "unreachable": unreachable}


def frame_round_trip(n: int = 20_000, size: int = 300) -> tuple[float, float]:
    """µs per request/answer of ``size`` bytes: plain sockets, then SecureSockets (blocking, one thread each)."""
    before = channel.current_key()
    channel.inherit_key(Cookie("a benchmark cookie, long enough").key)
    try:
        return _round_trip(False, n, size), _round_trip(True, n, size)
    finally:
        channel.inherit_key(before)


def _round_trip(secure: bool, n: int, size: int) -> float:
    a, b = socket.socketpair()
    if secure:
        a = channel.SecureSocket(a.family, a.type, a.proto, fileno=a.detach())
        b = channel.SecureSocket.accepted(b)
    payload = b"x" * size

    def echo() -> None:
        for _ in range(n):
            got = b""
            while len(got) < size:
                try:
                    got += b.recv(65536)
                except BlockingIOError:
                    continue
            sent = 0
            while sent < size:
                sent += b.send(got[sent:])

    thread = threading.Thread(target=echo)
    thread.start()
    start = time.perf_counter()
    for _ in range(n):
        sent = 0
        while sent < size:
            sent += a.send(payload[sent:])
        got = b""
        while len(got) < size:
            try:
                got += a.recv(65536)
            except BlockingIOError:
                continue
    took = time.perf_counter() - start
    thread.join()
    a.close()
    b.close()
    return took / n * 1e6


def actor_call(n: int = 2000) -> float:
    """µs per call to an actor on a multiproc runtime (every frame authenticated)."""
    from tests.supervision.actors import Counter

    with ActorRuntime("multiproc", "bench-call") as rt:
        child = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)]).child("c")
        child.call("incr")
        start = time.perf_counter()
        for _ in range(n):
            child.call("incr")
        return (time.perf_counter() - start) / n * 1e6


def run() -> str | None:
    lines = ["### The cluster's plumbing (authenticated connections, joining, membership)", ""]
    plain, secure = frame_round_trip()
    calls = [actor_call() for _ in range(3)]
    lines += ["| round trip of a 300-byte frame, one thread each side | µs |", "|---|---|",
              f"| plain sockets | {plain:.1f} |", f"| SecureSocket (HMAC-SHA256 records) | {secure:.1f} |",
              f"| multiproc actor call, authenticated (median of 3 × 2,000) | {statistics.median(calls):.0f} |", ""]
    rows = [r for r in (join_and_probe(n) for n in SIZES) if r is not None]
    if rows:
        lines += ["| hosts (namespaces) | hosts ready (s) | all joined after the leader is up (s) | "
                  "rt.nodes(), all up (s) | listed up | rt.nodes(), one stopped (s) | listed unreachable |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            joined = f"{r['joined']:.1f}" if r["joined"] is not None else "not within 120 s"
            lines.append(f"| {r['hosts']} | {r['ready']:.1f} | {joined} | {r['probe']:.2f} | {r['all_up']} | "
                         f"{r['stopped_probe']:.2f} | {r['unreachable']} |")
    else:
        lines.append("(hosts: not run, network namespaces need root)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
