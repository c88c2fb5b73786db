"""A bad day on a cluster, on one machine: four network-namespace hosts join this process's runtime and an
evaluation runs through seven kinds of fault.

    ./run hosts            (root: it makes network namespaces; or python examples/distributed_eval.py)

It starts the provider simulator and a ``tcp`` runtime on a private bridge, four ``python -m dspex host``
processes in their own namespaces, and evaluates 4,000 examples with ``run_distributed`` while, one after
another: a host is stopped (SIGSTOP) and continued, a host's link goes down and comes back, a host's link
is throttled (256 kbit/s), a host is killed (-9) and started again (it rejoins and is used again),
the leader is cut off from every host for three seconds, and two hosts are killed at once and started
again. It prints, for each fault, how long the leader took to give the examples a lost host held to
another one; then that every example ended as exactly one row, and the leader's ledger next to what the
provider billed (requests and tokens: the ledger must never say less).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Callable

import dspex
from dspex.testing import Faults, ProviderServer
from dspex.testing.netns import Network, NetworkUnavailable, ip

HOST_PORT = 19500
KEY = "sk-example-not-a-secret"
LOST_AFTER = 2.0  # run_distributed's default: a host silent this long is lost
SETTLE_S = 20.0  # seconds, after the run, the hosts' last attempts may take to report


def answer(request) -> str:
    question = request.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return f"[[ ## answer ## ]]\n{question.upper()}\n\n[[ ## completed ## ]]"


def question_of(logged) -> str:
    text = logged.body["messages"][-1]["content"] if isinstance(logged.body, dict) else ""
    return text.split("[[ ## question ## ]]\n")[-1].split("\n")[0]


class Faults7:
    """The seven faults, one after another on a timeline (seconds after the run starts), each noted with
    the time it struck so the leader's reaction can be measured from the provider's log."""

    def __init__(self, net: Network, leader: str) -> None:
        self.net, self.leader = net, leader
        self.struck: list[tuple[str, float, bool]] = []  # (what, when (time.time()), strands examples)
        self.stop = threading.Event()

    def timeline(self) -> list[tuple[float, str, Callable[[], None], bool]]:
        net = self.net
        return [
            (3.0, "SIGSTOP host 2 for 4 s", lambda: self._signal(1, signal.SIGSTOP, after=4.0), True),
            (10.0, "link of host 3 down for 4 s", lambda: self._link(2, down_for=4.0), True),
            (16.0, "link to host 4 throttled to 256 kbit/s for 5 s", lambda: self._throttle(3, 5.0), False),
            (23.0, "kill -9 of host 1, started again 4 s later", lambda: self._kill([0], restart_after=4.0), True),
            (31.0, "leader cut off from every host for 3 s",
             lambda: self._link(*range(len(net.hosts)), down_for=3.0), True),
            (38.0, "kill -9 of hosts 2 and 3, started again 4 s later",
             lambda: self._kill([1, 2], restart_after=4.0), True),
        ]

    def run(self, started: float, first: int) -> None:
        for at, what, strike, strands in self.timeline()[:first]:
            if self.stop.wait(max(0.0, started + at - time.monotonic())):
                return
            self.struck.append((what, time.time(), strands))
            print(f"  t={time.monotonic() - started:5.1f}s  {what}", flush=True)
            strike()

    def _later(self, seconds: float, then: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, then)
        timer.daemon = True
        timer.start()

    def _signal(self, i: int, sig: int, after: float) -> None:
        pids = self.net.pids(i)
        for pid in pids:
            os.kill(pid, sig)
        self._later(after, lambda: [os.kill(pid, signal.SIGCONT) for pid in pids])

    def _link(self, *hosts: int, down_for: float) -> None:
        for i in hosts:
            ip("link", "set", self.net.hosts[i].link, "down", check=False)
        self._later(down_for, lambda: [ip("link", "set", self.net.hosts[i].link, "up", check=False) for i in hosts])

    def _throttle(self, i: int, seconds: float) -> None:
        link = self.net.hosts[i].link
        subprocess.run(["tc", "qdisc", "add", "dev", link, "root", "tbf", "rate", "256kbit", "burst", "16kbit",
                        "latency", "500ms"], check=False)
        self._later(seconds, lambda: subprocess.run(["tc", "qdisc", "del", "dev", link, "root"], check=False))

    def _kill(self, hosts: list[int], restart_after: float) -> None:
        for i in hosts:
            self.net.kill(i)

        def restart() -> None:
            for i in hosts:
                self.net.spawn(i, [sys.executable, "-m", "dspex", "host", "--leader", self.leader, "--bind",
                                   self.net.hosts[i].ip, "--port", str(HOST_PORT)], env={"OPENAI_API_KEY": KEY})
        self._later(restart_after, restart)


def reaction(server: ProviderServer, struck_at: float, until: float) -> float | None:
    """Seconds from ``struck_at`` until the first question asked before it was asked again (by another host:
    the leader gave a lost host's examples away), or None if none was asked again before ``until``."""
    log = list(server.log)
    before = {question_of(r) for r in log if r.at < struck_at}
    again = [r.at for r in log if struck_at <= r.at < until and question_of(r) in before]
    return min(again) - struck_at if again else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--faults", type=int, default=6, help="strike only the first FAULTS of the timeline")
    args = parser.parse_args(argv)
    try:
        net = Network(4)
    except NetworkUnavailable as exc:
        print(f"cannot make network namespaces here: {exc}", file=sys.stderr)
        return 2
    os.environ["OPENAI_API_KEY"] = KEY  # the hosts read their key from their own environment
    with net, ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.1), host=net.leader_ip) as server, \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts],
                          cache_dir=tempfile.mkdtemp(prefix="dspex-example-"), log_level="critical") as rt:
        leader = f"{net.leader_ip}:{rt.actors.admin_port}"
        hosts = net.start_dspex_hosts(leader, HOST_PORT, {"OPENAI_API_KEY": KEY})
        print(f"{len(hosts)} dspex hosts joined the leader {leader}: {', '.join(hosts)}", flush=True)
        lm = dspex.LM("openai/sim", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False)
        devset = [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(args.n)]

        def metric(example, prediction, trace=None):
            return prediction.answer == example.answer

        faults = Faults7(net, leader)
        started = time.monotonic()
        striker = threading.Thread(target=faults.run, args=(started, args.faults), daemon=True)
        striker.start()
        try:
            result = dspex.Evaluate(devset, metric, max_concurrency=8, workers=1, progress=False).run_distributed(
                dspex.Predict("question -> answer", lm=lm), hosts=hosts)
        finally:
            faults.stop.set()
        ended = time.time()
        print(f"\nthe leader's reaction: seconds until a lost host's examples were asked again elsewhere "
              f"(lost_after={LOST_AFTER:g}s):")
        for (what, at, strands), nxt in zip(faults.struck, [*[f[1] for f in faults.struck[1:]], ended]):
            seconds = reaction(server, at, nxt) if strands else None
            shown = (f"{seconds:.1f}s" if seconds is not None else
                     "no example asked twice" if strands else "no host lost")
            print(f"  {what:<52} {shown}")
        indices = Counter(row.index for row in result.rows)
        exact = sorted(indices) == list(range(args.n)) and set(indices.values()) == {1}
        by_worker = Counter(row.worker.split("@")[-1] for row in result.rows)
        print(f"\n{len(result.rows)} rows for {args.n} examples ({'each exactly once' if exact else 'NOT exact'}), "
              f"score {result.score:.2f}%, {sum(r.attempts > 1 for r in result.rows)} ran again after a loss, "
              f"{len(result.errors)} failed, {result.wall_s:.1f}s")
        for host, count in sorted(by_worker.items()):
            print(f"  {host:<24} {count} rows")
        # every example has its row; a host that was lost may still finish the attempts it had (their examples
        # ran again elsewhere): the provider bills them and the ledger books them as they report. Both are read
        # once nothing is out at the client actor (leases held ahead and not used go back within seconds)
        waited = time.monotonic()
        while (out := lm.status().in_flight) and time.monotonic() - waited < SETTLE_S:
            time.sleep(0.1)
        billed = [r for r in server.log if r.status == 200]
        usage = rt.usage().total
        billed_tokens = sum(r.prompt_tokens + r.completion_tokens for r in billed)
        # every attempt the ledger booked: requests (less cache hits), their retries, and the hedges' twins that
        # lost their race (booked at their maximum: the provider may have answered them too)
        attempts = usage.requests - usage.cache_hits + usage.retries + usage.hedged
        holds = attempts >= len(billed) and usage.total_tokens >= billed_tokens
        print(f"\nafter the run, the hosts' last attempts settled in {time.monotonic() - waited:.1f}s"
              + (f" ({out} leases still out)" if out else ""))
        print(f"provider billed: {len(billed)} requests, {billed_tokens} tokens")
        print(f"leader's ledger: {attempts} requests, {usage.total_tokens} tokens "
              f"({usage.unconfirmed_calls} booked at their maximum: answered, or maybe, to a host that was lost)")
        print("ledger >= billed: " + ("yes" if holds else "NO"))
    print("runtime closed, host processes stopped, namespaces removed")
    return 0 if exact and holds else 1


if __name__ == "__main__":
    raise SystemExit(main())
