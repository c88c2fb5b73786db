"""Hosts for multi-host tests and benchmarks: network namespaces on one bridge, on this machine only.

``with Network(2) as net:`` makes a bridge with the leader's address (``net.leader_ip``) and two
namespaces (``net.hosts[i].ip``) on a /24 of 10.x.y.0 that no interface uses yet. Processes started
in a host with ``net.spawn(i, argv)``; ``net.tear_down(i)`` kills every process in that namespace and
cuts its link (a host lost mid-run). Leaving the block kills what is left in the namespaces and
removes them and the bridge, whatever happened. Needs root and iproute2 (``ip``): without them,
:class:`NetworkUnavailable` says so (the tests skip on it).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence



class NetworkUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, or no iproute2)."""


@dataclass(frozen=True)
class Host:
    ns: str
    ip: str
    link: str


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def available() -> str | None:
    """Why multi-host tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def _free_subnet() -> str:
    used = ip("-4", "-o", "addr").stdout
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        net = f"10.{rng.randint(64, 250)}.{rng.randint(0, 254)}"
        if f" {net}." not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test network")


class Network:
    def __init__(self, n_hosts: int) -> None:
        reason = available()
        if reason:
            raise NetworkUnavailable(reason)
        tag = f"{os.getpid() % 100000}{random.randint(0, 9)}"
        self.subnet = _free_subnet()
        self.bridge = f"dxb{tag}"
        self.leader_ip = f"{self.subnet}.1"
        self.hosts = [Host(f"dspex-{tag}-{i}", f"{self.subnet}.{i + 2}", f"dx{tag}v{i}") for i in range(n_hosts)]
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Network":
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.leader_ip}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                ip("netns", "add", host.ns)
                ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
                ip("link", "set", host.link, "master", self.bridge, "up")
                ip("netns", "exec", host.ns, "ip", "addr", "add", f"{host.ip}/24", "dev", "eth0")
                ip("netns", "exec", host.ns, "ip", "link", "set", "eth0", "up")
                ip("netns", "exec", host.ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def spawn(self, i: int, argv: Sequence[str], env: dict | None = None) -> subprocess.Popen:
        """Start ``argv`` in host ``i`` (stdin a pipe: closing it is how our servers are told to stop)."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISION_", "THESPIAN_"))}
        full_env.update(env or {})
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[i].ns, *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=full_env)
        self.procs.append(proc)
        return proc

    def start_dspex_hosts(self, leader: str, port: int, env: dict | None = None) -> list[str]:
        """``python -m dspex host`` in every host, joined to ``leader`` (``ip:port``); waits until each
        says it is ready and returns their node addresses (``ip:port``) for ``run_distributed``."""
        for i, host in enumerate(self.hosts):
            proc = self.spawn(i, [sys.executable, "-m", "dspex", "host", "--leader", leader, "--bind", host.ip,
                                  "--port", str(port)], env=env)
            line = proc.stdout.readline()
            if not line.startswith("dspex host ready"):
                raise RuntimeError(f"the dspex host in {host.ns} did not start (printed {line!r})")
        return [f"{h.ip}:{port}" for h in self.hosts]

    def pids(self, i: int) -> list[int]:
        out = ip("netns", "pids", self.hosts[i].ns, check=False).stdout
        return [int(p) for p in out.split()]

    def tear_down(self, i: int) -> None:
        """Host ``i`` is lost: its link goes down and every process in it is killed (-9)."""
        ip("link", "set", self.hosts[i].link, "down", check=False)
        self.kill(i)

    def kill(self, i: int) -> None:
        """Every process in host ``i`` is killed (-9), by pid (the namespace's members, again until none is
        left); its link stays up (the machine reboots, say)."""
        for _ in range(50):
            pids = self.pids(i)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + 10.0
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for i, host in enumerate(self.hosts):
            self.kill(i)
            ip("netns", "del", host.ns, check=False)
            ip("link", "del", host.link, check=False)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        ip("link", "del", self.bridge, check=False)
