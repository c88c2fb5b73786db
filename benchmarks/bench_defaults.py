"""dspex and DSPy at their default settings (no rpm=, no cache=, nothing tuned), as a new user runs them,
against the same provider simulator in one run:

* client CPU per ``Predict`` call, sequential, 0 ms latency (caller plus the actor processes, never the server);
* ``Evaluate`` of 1000 examples at 50 ms latency with 64 in flight: threads, and 2 worker processes;
* a simulator that enforces 600 requests/min and advertises it in OpenAI's headers: 300 examples, how many
  requests it answered 429, and wall time.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE, descendants_cpu, simulator
from dspex.testing import ProviderServer
from dspex.testing.limits import ServerLimits

ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
KEY = "sk-bench"
PREDICT_N, EVAL_N, LIMITED_N, LIMITED_RPM = 1000, 1000, 300, 600


def new_lm(url: str) -> dspex.LM:
    return dspex.LM("openai/sim", api_key=KEY, base_url=url + "/v1")  # every other setting: its default


def devset(n: int) -> list[dspex.Example]:
    stamp = time.time()  # distinct questions per run: the default cache never answers
    return [dspex.Example(question=f"question {i} {stamp}", answer="ok").with_inputs("question") for i in range(n)]


def exact(example, pred, trace=None):
    return pred.answer == example.answer


def ours_predict_cpu(base: str) -> float:
    with simulator("--answer", ANSWER) as (url, server_pid), \
            dspex.runtime(base, cache_dir=tempfile.mkdtemp(), log_level="error"):
        program = dspex.Predict("question -> answer", lm=new_lm(url))
        for ex in devset(20):
            program(**ex.inputs())
        questions = devset(PREDICT_N)
        c0, d0 = time.process_time(), descendants_cpu(server_pid)
        for ex in questions:
            program(**ex.inputs())
        return (time.process_time() - c0 + descendants_cpu(server_pid) - d0) / PREDICT_N


def ours_evaluate(base: str, *server_args: str) -> dict:
    with simulator("--answer", ANSWER, *server_args) as (url, _), \
            dspex.runtime(base, cache_dir=tempfile.mkdtemp(), log_level="error"):
        program = dspex.Predict("question -> answer", lm=new_lm(url))
        dspex.Evaluate(devset(20), exact, progress=False).run(program)  # warm: workers and connections
        result = dspex.Evaluate(devset(EVAL_N), exact, progress=False).run(program)
    return {"wall": result.wall_s, "rows": len(result.rows), "ok": sum(r.score == 1.0 for r in result.rows)}


def ours_limited() -> dict:
    limits = ServerLimits(rpm=LIMITED_RPM)
    with ProviderServer(ANSWER, limits=limits) as server, \
            dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = new_lm(server.url)
        result = dspex.Evaluate(devset(LIMITED_N), exact, progress=False).run(dspex.Predict("question -> answer", lm=lm))
        status = lm.status()
        return {"wall": result.wall_s, "ok": sum(r.score == 1.0 for r in result.rows), "requests": len(server.log),
                "throttled": len(server.throttled()), "source": status.rate_source, "rpm": status.rpm}


def theirs(mode: str, n: int, threads: int, url: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_defaults_bench.py"), url, mode, str(n), str(threads)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def theirs_on_simulator(mode: str, n: int, threads: int, *server_args: str) -> dict | None:
    with simulator("--answer", ANSWER, *server_args) as (url, _):
        return theirs(mode, n, threads, url)


def theirs_limited() -> dict | None:
    with ProviderServer(ANSWER, limits=ServerLimits(rpm=LIMITED_RPM)) as server:
        t0 = time.perf_counter()
        out = theirs("evaluate", LIMITED_N, 16, server.url)
        if out is None or "error" in out:
            return out
        return {**out, "wall_total": time.perf_counter() - t0, "requests": len(server.log),
                "throttled": len(server.throttled())}


def _ratio(x: float, y: float | None) -> str:
    return f"{x / y:.2f}×" if y else "n/a"


def run() -> str:
    cpu_local, cpu_multi = ours_predict_cpu("local"), ours_predict_cpu("multiproc")
    d_cpu = theirs_on_simulator("predict", PREDICT_N // 2, 1)
    dc = d_cpu.get("cpu_per_call") if d_cpu else None
    threads = ours_evaluate("local", "--latency", "0.05")
    workers = ours_evaluate("multiproc", "--latency", "0.05")
    d_eval = theirs_on_simulator("evaluate", EVAL_N, 64, "--latency", "0.05")
    limited, d_limited = ours_limited(), theirs_limited()
    rate = lambda r: r["rows"] / r["wall"] if r and "wall" in r else None  # noqa: E731
    d_rate = rate(d_eval)
    lines = [
        "**Client CPU per `Predict` call** at default settings (0 ms latency, sequential; goal ≤ 0.5× DSPy)",
        "",
        "| program | CPU per call | vs DSPy |",
        "|---|---|---|",
        f"| dspy.Predict + dspy.LM 3.4.1, defaults | {dc * 1e3:.3f} ms | 1.00× |" if dc else "| DSPy | not measured | |",
        f"| dspex.Predict + dspex.LM, defaults, local runtime | {cpu_local * 1e3:.3f} ms | {_ratio(cpu_local, dc)} |",
        f"| dspex, defaults, multiproc runtime (caller + actor processes) | {cpu_multi * 1e3:.3f} ms | "
        f"{_ratio(cpu_multi, dc)} |",
        "",
        f"**Evaluate** at default settings, {EVAL_N} examples, 50 ms latency, 64 in flight "
        "(goal ≥ 1.5× DSPy, every example ok; workers ≥ 90% of threads)",
        "",
        "| run | examples/s | ok | vs DSPy |",
        "|---|---|---|---|",
    ]
    if d_rate:
        lines.append(f"| dspy.Evaluate(num_threads=64) | {d_rate:.0f} | {d_eval['ok']}/{d_eval['rows']} | 1.00× |")
    for label, r in (("dspex Evaluate, threads (local runtime)", threads),
                     ("dspex Evaluate, 2 worker processes (multiproc runtime)", workers)):
        lines.append(f"| {label} | {rate(r):.0f} | {r['ok']}/{r['rows']} | {_ratio(rate(r), d_rate)} |")
    lines.append(f"\nworker processes vs threads: {rate(workers) / rate(threads):.0%}")
    lines += [
        "",
        f"**A provider that enforces {LIMITED_RPM} requests/min** (10/s, bursts of 10) and says so in its headers: "
        f"{LIMITED_N} examples, defaults (goal: < 5% of requests answered 429)",
        "",
        "| run | ok | requests sent | answered 429 | wall | rate in force |",
        "|---|---|---|---|---|---|",
    ]
    if d_limited and "error" not in d_limited:
        share = d_limited["throttled"] / max(1, d_limited["requests"])
        lines.append(f"| dspy.Evaluate(num_threads=16) | {d_limited['ok']}/{d_limited['rows']} | "
                     f"{d_limited['requests']} | {d_limited['throttled']} ({share:.0%}) | {d_limited['wall']:.1f} s | "
                     "none (litellm retries) |")
    elif d_limited:
        lines.append(f"| dspy.Evaluate(num_threads=16) | failed: {d_limited['error']} | | | | |")
    share = limited["throttled"] / max(1, limited["requests"])
    lines.append(f"| dspex Evaluate | {limited['ok']}/{LIMITED_N} | {limited['requests']} | {limited['throttled']} "
                 f"({share:.1%}) | {limited['wall']:.1f} s | {limited['rpm']:g} rpm, {limited['source']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
