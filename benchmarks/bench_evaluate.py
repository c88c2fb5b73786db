"""Evaluate side by side with ``dspy.Evaluate`` against the same provider simulator (its own process).

* 1000 examples at 50 ms latency, concurrency 16 and 64 (floor: concurrency / 0.05 s);
* a CPU-heavy metric (~20 ms CPU per example): 2 worker processes vs 1;
* 20% 5xx + 10% 429: rows lost (goal 0) and wall time;
* run_distributed over hosts in network namespaces on this machine (root only): the same work spread
  over 1 and 2 hosts (the hosts share this machine's 2 cores, so this measures the overhead of the
  convention, not extra capacity).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE, simulator

ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
N, CPU_N = 1000, 300
FAULTS = ["--error", "500:0.1", "--error", "503:0.1", "--error", "429:0.1", "--retry-after", "0.05"]


def cpu_metric(ms: float):
    def metric(example, pred, trace=None):
        end = time.thread_time() + ms / 1000
        while time.thread_time() < end:
            pass
        return pred.answer == example.answer
    return metric


def ours(n: int, concurrency: int, base: str, workers: int, cpu_ms: float, *server_args: str) -> dict:
    with simulator("--answer", ANSWER, *server_args) as (url, _), \
            dspex.runtime(base, cache_dir=tempfile.mkdtemp(), log_level="error"):
        return measure(url, n, concurrency, workers, cpu_ms, lambda evaluate, program: evaluate.run(program))


def measure(url: str, n: int, concurrency: int, workers: int, cpu_ms: float, run) -> dict:
    """A warm-up of 20 examples, then ``n`` examples through ``run(evaluate, program)``; wall, rows, score."""
    lm = dspex.LM("openai/sim", api_key="sk-bench", base_url=url + "/v1", rpm=None, cache=False, max_tokens=64)
    program = dspex.Predict("question -> answer", lm=lm)
    devset = [dspex.Example(question=f"question {i}", answer="ok").with_inputs("question") for i in range(n)]
    run(dspex.Evaluate(devset[:20], cpu_metric(0), max_concurrency=4, workers=workers, progress=False), program)
    result = run(dspex.Evaluate(devset, cpu_metric(cpu_ms), max_concurrency=concurrency, workers=workers,
                                progress=False), program)
    return {"wall": result.wall_s, "rows": len(result.rows), "score": result.score, "failed": len(result.errors)}


def across_hosts(n: int, concurrency: int, cpu_ms: float, n_hosts: int, *server_args: str) -> dict | None:
    """``run_distributed`` with one worker on each of ``n_hosts`` namespaces (None without root)."""
    from dspex.testing.netns import Network, NetworkUnavailable

    try:
        net = Network(n_hosts)
    except NetworkUnavailable:
        return None
    with net, simulator("--host", net.leader_ip, "--answer", ANSWER, *server_args) as (url, _), \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts], cache_dir=tempfile.mkdtemp(),
                          log_level="error") as rt:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", 19400, {"OPENAI_API_KEY": "sk-bench"})
        return measure(url, n, concurrency, 1, cpu_ms,
                       lambda evaluate, program: evaluate.run_distributed(program, hosts=hosts))


def theirs(n: int, threads: int, cpu_ms: float, *server_args: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    with simulator("--answer", ANSWER, *server_args) as (url, _):
        out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_evaluate_bench.py"), url, str(n), str(threads),
                              str(cpu_ms)], capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> str:
    lines = ["**Throughput**, 1000 examples, 50 ms latency", "", "| concurrency | floor | dspy.Evaluate | dspex, threads (local runtime) | "
             "dspex, 2 worker processes | dspex vs DSPy |", "|---|---|---|---|---|---|"]
    for c in (16, 64):
        floor = c / 0.05
        d = theirs(N, c, 0, "--latency", "0.05")
        inline = ours(N, c, "local", 0, 0, "--latency", "0.05")
        procs = ours(N, c, "multiproc", 2, 0, "--latency", "0.05")
        best = max(N / inline["wall"], N / procs["wall"])
        dr = N / d["wall"] if d else None
        lines.append(f"| {c} | {floor:.0f}/s | {f'{dr:.0f}/s ({dr / floor:.0%})' if dr else 'n/a'} | "
                     f"{N / inline['wall']:.0f}/s ({N / inline['wall'] / floor:.0%}) | "
                     f"{N / procs['wall']:.0f}/s ({N / procs['wall'] / floor:.0%}) | "
                     f"{f'{best / dr:.2f}×' if dr else 'n/a'} |")
    one = ours(CPU_N, 16, "multiproc", 1, 20, "--latency", "0.0")
    two = ours(CPU_N, 16, "multiproc", 2, 20, "--latency", "0.0")
    d_cpu = theirs(CPU_N, 16, 20, "--latency", "0.0")
    lines += ["", f"**CPU-heavy metric** (~20 ms CPU each), {CPU_N} examples, concurrency 16 (goal 2 workers ≥ 1.7× 1)",
              "", "| run | wall | speed-up |", "|---|---|---|",
              f"| dspex, 1 worker process | {one['wall']:.2f} s | 1.00× |",
              f"| dspex, 2 worker processes | {two['wall']:.2f} s | {one['wall'] / two['wall']:.2f}× |"]
    if d_cpu:
        lines.append(f"| dspy.Evaluate, 16 threads | {d_cpu['wall']:.2f} s | {one['wall'] / d_cpu['wall']:.2f}× |")
    f_ours = ours(N, 16, "local", 0, 0, "--latency", "0.05", *FAULTS)
    f_two = ours(N, 16, "multiproc", 2, 0, "--latency", "0.05", *FAULTS)
    f_d = theirs(N, 16, 0, "--latency", "0.05", *FAULTS)
    lines += ["", "**Faults**: 10% 500 + 10% 503 + 10% 429 (Retry-After 0.05 s), 1000 examples, 50 ms, concurrency 16",
              "", "| run | rows returned | score | failed rows (typed) | wall |", "|---|---|---|---|---|"]
    if f_d:
        lines.append(f"| dspy.Evaluate | {f_d['rows']} | {f_d['score'] / 100:.3f} | not distinguishable from wrong answers "
                     f"| {f_d['wall']:.2f} s |")
    lines.append(f"| dspex, threads | {f_ours['rows']} | {f_ours['score']:.3f} | {f_ours['failed']} | {f_ours['wall']:.2f} s |")
    lines.append(f"| dspex, 2 workers | {f_two['rows']} | {f_two['score']:.3f} | {f_two['failed']} | {f_two['wall']:.2f} s |")
    lines += hosts_table()
    return "\n".join(lines)


def hosts_table() -> list[str]:
    h1 = across_hosts(N, 16, 0, 1, "--latency", "0.05")
    if h1 is None:
        return ["", "**Across hosts**: not measured (needs root for network namespaces)."]
    h2 = across_hosts(N, 16, 0, 2, "--latency", "0.05")
    c1 = across_hosts(CPU_N, 16, 20, 1, "--latency", "0.0")
    c2 = across_hosts(CPU_N, 16, 20, 2, "--latency", "0.0")
    floor = 16 / 0.05
    return ["", "**Across hosts** (`run_distributed`, one worker per host, hosts are network namespaces on this "
            "2-core machine: overhead, not capacity)", "",
            "| run | 1 host | 2 hosts |", "|---|---|---|",
            f"| 1000 ex, 50 ms, concurrency 16 (floor {floor:.0f}/s) | {N / h1['wall']:.0f}/s, {h1['rows']} rows | "
            f"{N / h2['wall']:.0f}/s, {h2['rows']} rows |",
            f"| {CPU_N} ex, ~20 ms CPU metric, concurrency 16 | {c1['wall']:.2f} s | {c2['wall']:.2f} s "
            f"({c1['wall'] / c2['wall']:.2f}×) |"]


if __name__ == "__main__":
    print(run())
