"""LM clients side by side with ``dspy.LM`` against the same provider simulator (a separate process).

* client CPU per request at 0 ms latency (all client-side processes: caller plus, on multiproc,
  the actor processes; never the server's);
* throughput with 64 in flight at 50 ms latency (floor: 64 / 0.05 s = 1280/s);
* 20% 5xx + 10% 429 (Retry-After 0.2 s): answers, typed failures, wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dspex
from supervision import procfs

HERE = Path(__file__).resolve().parent
DSPY_PY = HERE / ".venv-dspy" / "bin" / "python"
CPU_N, TP_N, TP_THREADS, FAULT_N, FAULT_THREADS = 2000, 1920, 64, 400, 16
FAULTS = ["--error", "500:0.1", "--error", "503:0.1", "--error", "429:0.1", "--retry-after", "0.2"]


@contextmanager
def simulator(*args: str) -> Iterator[tuple[str, int]]:
    """The provider simulator in its own process (its CPU is not the client's)."""
    proc = subprocess.Popen([sys.executable, "-m", "dspex.testing.provider_server", "--answer", "ok", *args],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the simulator did not start (printed {url!r})")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def descendants_cpu(exclude: int) -> float:
    """CPU seconds of this process's descendants (actor system processes), except ``exclude``."""
    parent_of = {}
    stats = {}
    for pid in procfs.pids():
        fields = procfs.stat_fields(pid)
        if fields is not None:
            parent_of[pid], stats[pid] = int(fields[1]), fields
    total, me = 0.0, os.getpid()
    for pid, fields in stats.items():
        p, chain = pid, 0
        while p in parent_of and p != me and chain < 50:
            p, chain = parent_of[p], chain + 1
        if p == me and pid not in (me, exclude):
            total += procfs.cpu_seconds(fields)
    return total


def _lm(url: str, **options) -> dspex.LM:
    return dspex.LM("openai/sim", api_key="sk-bench", base_url=url + "/v1", cache=False, max_tokens=64, rpm=None,
                    **options)


def ours_cpu(base: str) -> float:
    with simulator() as (url, server_pid), \
            dspex.runtime(base, cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = _lm(url)
        for i in range(50):
            lm.request(f"warm {i}")
        c0, d0 = time.process_time(), descendants_cpu(server_pid)
        for i in range(CPU_N):
            lm.request(f"question {i}")
        return (time.process_time() - c0 + descendants_cpu(server_pid) - d0) / CPU_N


def ours_concurrent(n: int, threads: int, *server_args: str) -> dict:
    with simulator(*server_args) as (url, _), dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = _lm(url, max_in_flight=64)

        def call(i: int) -> str:
            try:
                return "ok" if lm(f"question {i}")[0] else "empty"
            except dspex.LMError as exc:
                return type(exc).__name__

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(call, range(-200, 0)))  # warm: every thread and connection exists (same for DSPy)
            t0 = time.perf_counter()
            results = list(pool.map(call, range(n)))
            wall = time.perf_counter() - t0
    failures: dict = {}
    for r in results:
        if r != "ok":
            failures[r] = failures.get(r, 0) + 1
    return {"wall": wall, "ok": results.count("ok"), "failures": failures}


def theirs(mode: str, n: int, threads: int, *server_args: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    with simulator(*server_args) as (url, _):
        out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_lm_bench.py"), url, mode, str(n), str(threads)],
                             capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fails(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d["failures"].items())) or "none"


def run() -> str:
    cpu_local, cpu_multi = ours_cpu("local"), ours_cpu("multiproc")
    d_cpu = theirs("cpu", CPU_N // 2, 1)
    floor = TP_THREADS / 0.05
    tp = ours_concurrent(TP_N, TP_THREADS, "--latency", "0.05")
    d_tp = theirs("throughput", TP_N, TP_THREADS, "--latency", "0.05")
    fl = ours_concurrent(FAULT_N, FAULT_THREADS, "--latency", "0.05", *FAULTS)
    d_fl = theirs("faults", FAULT_N, FAULT_THREADS, "--latency", "0.05", *FAULTS)
    dc = d_cpu["cpu_per_call"] if d_cpu else None

    def ratio(x: float, y: float | None) -> str:
        return f"{x / y:.2f}×" if y else "n/a"

    rate, d_rate = TP_N / tp["wall"], (TP_N / d_tp["wall"]) if d_tp else None
    lines = [
        "**Client CPU per request** (0 ms latency, sequential; goal ≤ 0.5× DSPy)",
        "",
        "| client | CPU per request | vs dspy.LM |",
        "|---|---|---|",
        f"| dspy.LM 3.4.1 (litellm) | {dc * 1e3:.3f} ms | 1.00× |" if dc else "| dspy.LM | not installed | |",
        f"| dspex.LM, local runtime | {cpu_local * 1e3:.3f} ms | {ratio(cpu_local, dc)} |",
        f"| dspex.LM, multiproc runtime (caller + actor processes) | {cpu_multi * 1e3:.3f} ms | {ratio(cpu_multi, dc)} |",
        "",
        f"**Throughput**, {TP_N} requests, {TP_THREADS} in flight, 50 ms latency (floor {floor:.0f}/s; goal ≥ 90%)",
        "",
        "| client | requests/s | % of floor | vs dspy.LM |",
        "|---|---|---|---|",
    ]
    if d_rate:
        lines.append(f"| dspy.LM, {TP_THREADS} threads | {d_rate:.0f} | {d_rate / floor:.0%} | 1.00× |")
    lines.append(f"| dspex.LM, local runtime | {rate:.0f} | {rate / floor:.0%} | {ratio(rate, d_rate)} |")
    lines += [
        "",
        f"**Faults**: 10% 500 + 10% 503 + 10% 429 (Retry-After 0.2 s), 50 ms latency, {FAULT_N} requests, "
        f"{FAULT_THREADS} threads, each library's default retries (DSPy 3, dspex 5)",
        "",
        "| client | answered | failed (by type) | wall |",
        "|---|---|---|---|",
    ]
    if d_fl:
        lines.append(f"| dspy.LM | {d_fl['ok']} | {_fails(d_fl)} | {d_fl['wall']:.2f} s |")
    lines.append(f"| dspex.LM | {fl['ok']} | {_fails(fl)} | {fl['wall']:.2f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
