"""A provider's bad day at default settings (issue 20 §2): 300 examples through ``dspex.Evaluate`` (its
defaults: 2 worker processes, 64 in flight) against the provider simulator (its own process, 30 ms
latency) in three conditions, interleaved, 3 runs each, medians:

* clean;
* 20% 500 + 10% 429 (``Retry-After: 0``, no rate headers): rows ok, wall, ratio to clean (goal: ≥ 99% ok,
  ≤ 2× clean), breaker trips, the learned rate;
* an outage: after 60 healthy requests, 100% 503 (no Retry-After) for 20 s, then healthy: rows ok, wall,
  how long the breaker took to open after the first 503, and requests sent while it was open beyond its
  trial calls (goal: 0).

``dspy.Evaluate`` (its defaults, 16 threads as in the other benchmarks; no breaker) runs the same three
conditions once each when its virtual environment is there.

``python -m benchmarks.bench_bad_day serve`` is the simulator process: it reads JSON commands on stdin
(``{"faults": {...}}``, ``{"log": true}``, ``{"count": true}``) and answers each with one JSON line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE

N, RUNS, LATENCY, OUTAGE_S, OUTAGE_AFTER = 300, 3, 0.03, 20.0, 60
ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
HEALTHY = {"latency": LATENCY}
BAD = {"error_rates": {"500": 0.2, "429": 0.1}, "retry_after": 0.0, "latency": LATENCY}
DOWN = {"error_rates": {"503": 1.0}, "retry_after": None, "latency": LATENCY}
SLACK = 0.25  # s: a request leased just before the breaker opened may reach the server a moment later


def _faults(spec: dict) -> Any:
    from dspex.testing import Faults

    rates = {int(k): v for k, v in spec.get("error_rates", {}).items()}
    return Faults(**{**spec, "error_rates": rates, "seed": None})


def serve() -> None:
    """The simulator process: one JSON command a line on stdin, one JSON answer a line on stdout."""
    from dspex.testing import ProviderServer

    with ProviderServer(answer=ANSWER, faults=_faults(HEALTHY)) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if "faults" in command:
                server.set_faults(_faults(command["faults"]))
                answer: Any = True
            elif "count" in command:
                answer = len(server.log)
            else:  # log: arrival time and status of every request since the last one, then cleared
                answer = [[e.at, e.status] for e in server.log]
                server.clear_log()
            print(json.dumps(answer), flush=True)


class Simulator:
    """The simulator process, driven over its pipes (thread-safe)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lock = proc, threading.Lock()
        self.url = proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"the simulator did not start (printed {self.url!r})")

    def ask(self, **command: Any) -> Any:
        with self.lock:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())


@contextmanager
def simulator() -> Iterator[Simulator]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_bad_day", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    try:
        yield Simulator(proc)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def outage(sim: Simulator, stop: threading.Event) -> None:
    """After OUTAGE_AFTER requests, the provider is down for OUTAGE_S seconds."""
    while sim.ask(count=True) < OUTAGE_AFTER:
        if stop.wait(0.01):
            return
    sim.ask(faults=DOWN)
    stop.wait(OUTAGE_S)
    sim.ask(faults=HEALTHY)


@contextmanager
def condition(sim: Simulator, name: str) -> Iterator[None]:
    """The server's faults for one run (the outage on a timer thread)."""
    sim.ask(log=True)  # clear
    sim.ask(faults=BAD if name == "bad" else HEALTHY)
    stop = threading.Event()
    saboteur = threading.Thread(target=outage, args=(sim, stop), daemon=True) if name == "outage" else None
    if saboteur is not None:
        saboteur.start()
    try:
        yield
    finally:
        stop.set()
        if saboteur is not None:
            saboteur.join()
        sim.ask(faults=HEALTHY)


def metric(example, pred, trace=None):
    return pred.answer == example.answer


def ours(sim: Simulator, name: str) -> dict:
    """One run at default settings (the cache off: every row must reach the server)."""
    with dspex.runtime(cache_dir=tempfile.mkdtemp(), log_level="error") as rt:
        events: list = []
        rt.actors.subscribe(events.append)
        lm = dspex.LM("openai/sim", api_key="sk-bench", base_url=sim.url + "/v1", cache=False)
        program = dspex.Predict("question -> answer", lm=lm)
        devset = [dspex.Example(question=f"question {i}", answer="ok").with_inputs("question") for i in range(N)]
        dspex.Evaluate(devset[:20], metric, progress=False).run(program)  # warm: worker processes, connections
        with condition(sim, name):
            start = time.monotonic()
            result = dspex.Evaluate(devset, metric, progress=False).run(program)
            wall = time.monotonic() - start
        status = lm.status()
    log = sim.ask(log=True)
    changes = [(e.kind, e.at) for e in events if getattr(e, "kind", "").startswith("breaker_")]
    out = {"ok": sum(r.error is None for r in result.rows) / N, "wall": wall, "trips": status.breaker_trips,
           "rpm": status.rpm, "rate_source": status.rate_source, "requests": len(log)}
    if name == "outage":
        out.update(breaker_report(log, changes, dspex.Breaker().trial_calls))
    return out


def breaker_report(log: list, changes: list, trial_calls: int) -> dict:
    """Open latency (first 503 → breaker open) and requests sent while open beyond the trial calls."""
    first_503 = min((at for at, status in log if status == 503), default=None)
    opened = next((at for kind, at in changes if kind == "breaker_open"), None)
    beyond = 0
    for (kind, since), (_, until) in zip(changes, changes[1:]):
        if kind == "breaker_open":
            beyond += sum(1 for at, _ in log if since + SLACK < at < until)
        elif kind == "breaker_half_open":
            beyond += max(0, sum(1 for at, _ in log if since <= at < until) - trial_calls)
    return {"open_after": None if first_503 is None or opened is None else opened - first_503,
            "beyond_trials": beyond,
            "trials": sum(1 for kind, _ in changes if kind == "breaker_half_open") * trial_calls,
            "503s": sum(1 for _, status in log if status == 503)}


def theirs(sim: Simulator, name: str) -> dict | None:
    """dspy.Evaluate (its defaults, 16 threads) under the same condition; None without its venv."""
    if not DSPY_PY.exists():
        return None
    sim.ask(faults=HEALTHY)
    proc = subprocess.Popen([str(DSPY_PY), str(HERE / "dspy_evaluate_bench.py"), sim.url, str(N), "16", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while sim.ask(count=True) < 20 and proc.poll() is None:  # its warm-up runs on a healthy provider
        time.sleep(0.01)
    with condition(sim, name):
        out, _ = proc.communicate(timeout=1800)
    sim.ask(log=True)
    found = json.loads(out.strip().splitlines()[-1])
    return {"ok": found["score"] / 100, "wall": found["wall"]}


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def run() -> str:
    conditions = ("clean", "bad", "outage")
    runs: dict[str, list[dict]] = {c: [] for c in conditions}
    with simulator() as sim:
        for _ in range(RUNS):  # interleaved: a slow moment of the machine falls on every condition alike
            for name in conditions:
                runs[name].append(ours(sim, name))
        dspy = {name: theirs(sim, name) for name in conditions}
    clean = _median(runs["clean"], "wall")
    lines = [f"{N} examples, `Evaluate` and `LM` at their defaults (2 worker processes, 64 in flight, retries 5, "
             f"breaker 50% of ≥ 20 calls, 3 trial calls after 5 s), simulator at {LATENCY * 1000:.0f} ms; "
             f"medians of {RUNS} interleaved runs. Goal under 20% 5xx + 10% 429: ≥ 99% rows ok, wall ≤ 2× clean; "
             f"under an outage: the breaker open within 2 s, nothing sent while open beyond its trial calls, every "
             "row ok after recovery.", "",
             "| condition | rows ok | wall | vs clean | breaker trips | learned rpm | dspy.Evaluate rows ok | "
             "dspy.Evaluate wall |", "|---|---|---|---|---|---|---|---|"]
    labels = {"clean": "clean", "bad": "20% 500 + 10% 429 (Retry-After: 0)",
              "outage": f"outage: 100% 503 for {OUTAGE_S:.0f} s, then healthy"}
    for name in conditions:
        ok, wall = _median(runs[name], "ok"), _median(runs[name], "wall")
        rates = ", ".join(sorted({"none" if r["rpm"] is None else f"{r['rpm']:.0f}" for r in runs[name]}))
        d = dspy[name]
        d_ok, d_wall = (f"{d['ok']:.1%}", f"{d['wall']:.2f} s") if d else ("n/a", "n/a")
        lines.append(f"| {labels[name]} | {ok:.1%} | {wall:.2f} s | {wall / clean:.2f}× | "
                     f"{_median(runs[name], 'trips'):.0f} | {rates} | {d_ok} | {d_wall} |")
    out = runs["outage"]
    lines += ["", "| outage | median | worst of the runs |", "|---|---|---|",
              f"| breaker open after the first 503 | {_median(out, 'open_after'):.2f} s | "
              f"{max(r['open_after'] for r in out):.2f} s |",
              f"| requests sent while open, beyond the trial calls | {_median(out, 'beyond_trials'):.0f} | "
              f"{max(r['beyond_trials'] for r in out)} |",
              f"| trial calls | {_median(out, 'trials'):.0f} | {max(r['trials'] for r in out)} |",
              f"| 503 answers (rows × their attempts in the outage) | {_median(out, '503s'):.0f} | "
              f"{max(r['503s'] for r in out)} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        print(run())
