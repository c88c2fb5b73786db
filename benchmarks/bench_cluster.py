"""The cluster's plumbing, measured (root only: hosts are network namespaces on this machine; DSPy has no
cluster, so there is no side by side here):

* joining: N hosts (``python -m supervision.node``) started *before* their leader, then the leader: seconds
  from the leader being up until all N have joined (Thespian alone retries after 7 min 22 s);
* ``rt.nodes()``: the wall of asking every host whether it is up, with all up and with one host stopped
  (SIGSTOP: it is listed as unreachable after the probe's 1 s timeout, the others still answer);
* the authenticated channel: the CPU of sending and reading a small frame through ``SecureSocket``s against
  plain sockets (a record: one HMAC-SHA256 to seal, one to check), the same inside TLS (``supervision.tls``:
  AES-GCM on top), and a call to an actor on a multiproc runtime, without and with TLS.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from supervision import ActorRuntime, ChildSpec, Cookie, SupervisorSpec, channel, procfs

NODE_PORT = 19500
SIZES = (8, 32)
SCALING = (1, 8, 32)
REPEATS = 3  # weak-scaling rounds, interleaved; the median run of each size is shown


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


def frame_cost(n: int = 20_000, size: int = 300, tls: Any = None) -> tuple[float, float, float]:
    """µs of this process's time to send one ``size``-byte frame and read it at the other end of a socket
    pair (one thread, non-blocking, as Thespian's loop does): plain sockets, SecureSockets, SecureSockets in TLS."""
    before, before_tls = channel.current_key(), channel.current_tls()
    channel.inherit_key(Cookie("a benchmark cookie, long enough").key)
    try:
        plain, secure = _one_way(False, n, size), _one_way(True, n, size)
        channel.inherit_tls(tls)
        return plain, secure, _one_way(True, n, size)
    finally:
        channel.inherit_key(before)
        channel.inherit_tls(before_tls)


def throwaway_tls(folder: str) -> Any:
    """A TlsConfig of a fresh CA's certificate (trustme, a test dependency), written in ``folder``."""
    import trustme

    from tests.supervision.pki import member

    return member(trustme.CA(), Path(folder), "bench")


def _one_way(secure: bool, n: int, size: int) -> float:
    a, b = socket.socketpair()
    if secure:
        a, b = channel.SecureSocket.connected(a), channel.SecureSocket.accepted(b)
    a.setblocking(False)
    b.setblocking(False)
    payload = b"x" * size
    if secure:  # the handshake, once
        while a.send(payload) == 0:
            try:
                b.recv(65536)
            except BlockingIOError:
                pass
        b.recv(65536)
    start = time.perf_counter()
    for _ in range(n):
        a.send(payload)
        b.recv(65536)
    took = time.perf_counter() - start
    a.close()
    b.close()
    return took / n * 1e6


def leader_cpu(rt: Any) -> float:
    """CPU seconds so far of the leader: this process and its actor system (the admin's session)."""
    session = os.getsid(rt.actors._root_pid)
    total = sum(os.times()[:2])
    for pid in procfs.pids():
        fields = procfs.stat_fields(pid)
        if fields is not None and int(fields[3]) == session:
            total += procfs.cpu_seconds(fields)
    return total


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent working (all processes, /proc/stat)."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def weak_scaling(n_hosts: int, per_host: int = 40, in_flight: int = 2, latency: float = 0.2,
                 idle_s: float = 5.0) -> dict | None:
    """``run_distributed`` of ``per_host`` examples a host, ``in_flight`` at once on each (one worker each),
    the provider answering in ``latency`` s, twice: the first evaluation also starts the workers on the hosts
    (cold), the second finds them up (warm: the runtime keeps its host pool). Examples a second, the leader's
    CPU an example (warm), the whole machine's, and the leader's CPU a second with the hosts joined and idle."""
    import tempfile

    import dspex
    from benchmarks.bench_clients import simulator
    from benchmarks.bench_evaluate import ANSWER, cpu_metric
    from dspex.testing.netns import Network, NetworkUnavailable

    try:
        net = Network(n_hosts)
    except NetworkUnavailable:
        return None
    with net, simulator("--host", net.leader_ip, "--answer", ANSWER, "--latency", str(latency)) as (url, _), \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts],
                          cache_dir=tempfile.mkdtemp(), log_level="error") as rt:
        started = time.monotonic()
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", NODE_PORT + 1,
                                      {"OPENAI_API_KEY": "sk-bench"})
        members = set(hosts)
        while not members <= set(rt.actors.convention_members()) and time.monotonic() - started < 300:
            time.sleep(0.1)
        joined = time.monotonic() - started
        lm = dspex.LM("openai/sim", api_key="sk-bench", base_url=url + "/v1", rpm=None, cache=False,
                      max_tokens=64, max_in_flight=10_000)
        program = dspex.Predict("question -> answer", lm=lm)
        devset = [dspex.Example(question=f"q{i}", answer="ok").with_inputs("question")
                  for i in range(n_hosts * per_host)]

        def evaluate() -> tuple[Any, float, float, float]:
            cpu, box, t = leader_cpu(rt), machine_cpu(), time.monotonic()
            result = dspex.Evaluate(devset, cpu_metric(0), max_concurrency=in_flight * n_hosts, workers=1,
                                    progress=False).run_distributed(program, hosts=hosts)
            return result, time.monotonic() - t, leader_cpu(rt) - cpu, machine_cpu() - box

        _, cold_wall, _, _ = evaluate()
        cpu = leader_cpu(rt)
        time.sleep(idle_s)
        idle = (leader_cpu(rt) - cpu) / idle_s
        result, wall, cpu, box = evaluate()
    return {"hosts": n_hosts, "examples": len(devset), "rows": len(result.rows), "failed": len(result.errors),
            "cold_wall": cold_wall, "cold_rate": len(devset) / cold_wall, "wall": wall, "rate": len(devset) / wall,
            "leader_cpu_ms": cpu / len(devset) * 1000, "machine_cores": box / wall, "leader_idle": idle,
            "start_and_join": joined}


def _median_run(runs: list[dict]) -> dict:
    """The run whose warm rate is the median of ``runs`` (a whole run, so its columns agree)."""
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


def leader_model(r: dict, per_host_rate: float) -> tuple[float, float, int]:
    """From one weak-scaling measurement: the leader's CPU a second per joined host (measured idle: its calls
    waiting at the coordinator) and per example (the rest of a busy run's: rows, reports, admissions), and how many hosts one leader core serves
    when each host finishes ``per_host_rate`` examples a second (the assumption: both costs stay as measured)."""
    per_host = r["leader_idle"] / r["hosts"]
    per_example = max(0.0, (r["leader_cpu_ms"] / 1000 * r["examples"] - r["leader_idle"] * r["wall"]) / r["examples"])
    return per_host, per_example, int(1.0 / (per_host + per_example * per_host_rate))


def actor_call(n: int = 2000, tls: Any = None) -> float:
    """µs per call to an actor on a multiproc runtime (every frame authenticated; with ``tls``, inside TLS)."""
    from tests.supervision.actors import Counter

    with ActorRuntime("multiproc", "bench-call", tls=tls) as rt:
        child = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)]).child("c")
        child.call("incr")
        start = time.perf_counter()
        for _ in range(n):
            child.call("incr")
        return (time.perf_counter() - start) / n * 1e6


def run() -> str | None:
    lines = ["### The cluster's plumbing (authenticated connections, joining, membership)", ""]
    import tempfile

    tls = throwaway_tls(tempfile.mkdtemp())
    plain, secure, in_tls = frame_cost(tls=tls)
    calls, tls_calls = [], []
    for _ in range(3):  # interleaved
        calls.append(actor_call())
        tls_calls.append(actor_call(tls=tls))
    lines += ["| a 300-byte frame sent and read (this process's time) | µs |", "|---|---|",
              f"| plain sockets | {plain:.1f} |", f"| SecureSocket (HMAC-SHA256 records) | {secure:.1f} |",
              f"| SecureSocket inside TLS (`tls=TlsConfig(...)`) | {in_tls:.1f} |",
              f"| multiproc actor call, authenticated (median of 3 × 2,000) | {statistics.median(calls):.0f} |",
              f"| the same inside TLS (interleaved with it) | {statistics.median(tls_calls):.0f} |", ""]
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
    rounds = [[r for r in (weak_scaling(n) for n in SCALING) if r is not None] for _ in range(REPEATS)]
    scaling = [_median_run([round_[i] for round_ in rounds]) for i in range(min(map(len, rounds)))]
    if scaling:
        one = scaling[0]["rate"] / scaling[0]["hosts"]
        floor = 2 / 0.2  # examples a second a host: 2 in flight, 0.2 s each
        lines += ["", f"Weak scaling: {scaling[0]['examples'] // scaling[0]['hosts']} examples a host, 2 in flight on "
                  "each (one worker), provider at 0.2 s (a host's floor: 10 examples/s). All hosts share this "
                  "machine's 2 cores (the machine column: cores busy during the warm run). Cold: the first "
                  "evaluation, which starts the workers on the hosts; warm: the next (the runtime keeps them). "
                  f"Each size run {REPEATS} times, interleaved (1, 8, 32, 1, ...): the run of median warm "
                  "rate.", "",
                  "| hosts | examples | rows (failed) | cold: examples/s | warm: wall (s) | warm: examples/s | "
                  "efficiency vs 1 host | of the floor | leader CPU / example (ms) | leader CPU idle (ms/s) | "
                  "machine (cores) | hosts started and joined (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in scaling:
            lines.append(f"| {r['hosts']} | {r['examples']} | {r['rows']} ({r['failed']}) | {r['cold_rate']:.1f} | "
                         f"{r['wall']:.1f} | {r['rate']:.1f} | {r['rate'] / (one * r['hosts']):.0%} | "
                         f"{r['rate'] / (floor * r['hosts']):.0%} | {r['leader_cpu_ms']:.2f} | "
                         f"{r['leader_idle'] * 1000:.0f} | {r['machine_cores']:.2f} | {r['start_and_join']:.1f} |")
        big = scaling[-1]
        per_host, per_example, served = leader_model(big, 32.0)
        lines += ["", f"The leader's cost, from the {big['hosts']}-host run: {per_host * 1000:.1f} ms of CPU a second "
                  f"per joined host (measured with the hosts idle: their calls waiting at the coordinator) and "
                  f"{per_example * 1000:.2f} ms per example (rows, reports, admissions). Assuming real hosts that "
                  f"each finish 32 examples a second (32 in flight, 1 s provider) and both costs as measured, one "
                  f"leader core serves about {served} hosts ({1.0 / (per_host + per_example * 10):.0f} at this "
                  f"benchmark's 10 examples a second a host)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
