"""What a compile costs in processes: BootstrapFewShotWithRandomSearch on a multiproc runtime against the
provider simulator (benchmarks/optimizer_task.py's task), counting the actor processes started while it
runs.

Every actor process of a multiprocTCPBase runtime descends from the runtime's Thespian admin, so a
sampler walks /proc every few milliseconds and keeps each descendant it sees (by pid and start time, so
a reused pid counts again); the lifecycle events (``start``/``restart`` with a pid) give the same count
exactly and say which evaluation each process belonged to. The same compile with ``workers=0`` (every
evaluation on threads in this process; LM calls still through the client actors) is the comparison.

    python -m benchmarks.bench_processes [num_candidate_programs]

Where the processes go: each Evaluate on a process runtime starts its own run supervisor, coordinator
and ``workers`` worker processes, and stops them at its end; a compile runs one Evaluate per bootstrap and
per candidate score, 4 at once. Leasing one pool per compile needs workers that take the program per run
(today it is in their init arguments, so a worker serves one program) and a coordinator that serves
several runs at once (a Tracker each, taking from them in turn, a worker's loss re-queueing in all).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections import Counter

import dspex
from benchmarks.optimizer_task import answer_text, rows
from dspex.testing import Faults, ProviderServer
from supervision import procfs

KEY = "sk-bench"
SAMPLE_EVERY = 0.002  # seconds between /proc walks


def examples(n: int, prefix: str) -> list[dspex.Example]:
    return [dspex.Example(**r).with_inputs("question") for r in rows(n, prefix)]


def exact(example, pred, trace=None):
    return pred.answer == example.answer


def admin_pid(port: int) -> int:
    title = f"MultiProcAdmin ActorAddr-(T|:{port})".encode()
    for pid in procfs.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().startswith(title):
                    return pid
        except OSError:
            continue
    raise LookupError(f"no Thespian admin on port {port}")


def descendants(root: int) -> dict[int, str]:
    """pid -> start time (clock ticks since boot) of every live descendant of ``root``."""
    parent, started = {}, {}
    for pid in procfs.pids():
        fields = procfs.stat_fields(pid)
        if fields is not None and fields[0] not in ("Z", "X"):
            parent[pid], started[pid] = int(fields[1]), fields[18]  # ppid; starttime (field 22 of stat)
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for child in [c for c, pp in parent.items() if pp == p]:
            found[child] = started[child]
            frontier.append(child)
    return found


class Sampler:
    """Every process that descends from ``root`` while it runs: seen (pid, start) pairs and the peak alive."""

    def __init__(self, root: int) -> None:
        self.root, self.seen, self.peak = root, set(), 0
        self.before = set(descendants(root).items())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            now = set(descendants(self.root).items())
            self.seen |= now - self.before
            self.peak = max(self.peak, len(now - self.before))

    @property
    def started(self) -> int:
        return len(self.seen)


def compile_once(rt: dspex.Runtime, url: str, n: int, workers: int | None) -> dict:
    lm = dspex.LM("openai/task", api_key=KEY, base_url=url, cache=False)
    student = dspex.Predict("question -> answer", lm=lm)
    events: list = []
    unsubscribe = rt.actors.subscribe(events.append)
    options = {} if workers is None else {"workers": workers}
    optimizer = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=n, max_bootstrapped_demos=2,
                                                       max_labeled_demos=2)
    with Sampler(admin_pid(rt.actors.admin_port)) as sampler:
        since, t0 = time.time(), time.perf_counter()
        compiled = optimizer.compile(student, trainset=examples(40, "t"), valset=examples(50, "v"), **options)
        wall = time.perf_counter() - t0
    time.sleep(0.2)  # the last events reach the subscriber
    unsubscribe()
    starts = [e for e in events if e.kind in ("start", "restart") and e.pid and e.pid != os.getpid()
              and e.at >= since]  # (the root's buffer also hands over the events of the runtime's own start)
    per_run = Counter(top_level(e) for e in starts)  # a top-level supervisor and everything under it
    evaluations = [run for run in per_run if "eval-" in run]
    return {"wall": wall, "started": sampler.started, "peak": sampler.peak, "events": len(starts),
            "evaluations": len(evaluations), "per_evaluation": Counter(per_run[r] for r in evaluations),
            "other": {run: n for run, n in per_run.items() if run not in evaluations},
            "candidates": len(compiled.compile_report.candidates)}


def top_level(event) -> str:
    """The top-level supervisor an actor's start belongs to (the root's own children name themselves)."""
    return f"{event.supervisor}/{event.child}".split("/")[1]


def run(n: int = 5) -> str:
    with ProviderServer(lambda req: answer_text(req.messages, req.last_user), faults=Faults(latency=0.01)) as sim, \
            dspex.runtime("multiproc", cache_dir=tempfile.mkdtemp(), log_level="error") as rt:
        on_workers = compile_once(rt, sim.base_url(), n, None)
        on_threads = compile_once(rt, sim.base_url(), n, 0)
    plan = 3 + n  # zero-shot, labeled, unshuffled bootstrap, then n shuffled bootstraps
    rounds = -(-plan // 4)
    lines = [f"BootstrapFewShotWithRandomSearch, {plan} candidates (4 in flight: {rounds} rounds), 40 train, 50 val, "
             "multiproc runtime, simulator at 10 ms",
             "",
             "| evaluations run on | actor processes started (/proc) | (lifecycle events) | peak alive | "
             "evaluations | processes per evaluation | per round | wall |",
             "|---|---|---|---|---|---|---|---|"]
    for label, m in (("worker processes (workers=2, the default)", on_workers), ("threads (workers=0)", on_threads)):
        per_eval = ", ".join(f"{k}×{v}" for k, v in sorted(m["per_evaluation"].items())) or "-"
        lines.append(f"| {label} | {m['started']} | {m['events']} | {m['peak']} | {m['evaluations']} | {per_eval} | "
                     f"{m['events'] / rounds:.1f} | {m['wall']:.2f} s |")
        if m["other"]:
            lines.append(f"|   (besides evaluations: {m['other']}) | | | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
