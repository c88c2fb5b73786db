"""Ten thousand evaluations in flight from one process: dspex, DSPy and a raw asyncio client, side by side in
one run, against the project's simulator in its own process (2 s latency, so the floor is 2 s).

    python -m benchmarks.bench_scale [N] [LATENCY]        (default 10000 examples, 2.0 s)

* **raw asyncio client**: N requests at once, each on its own connection (asyncio streams), in its own
  process: what this machine and the simulator allow, the yardstick of the issue's "wall ≤ 1.5× raw".
* **dspex**: ``Evaluate(max_concurrency=N)`` of a ``Predict`` with ``LM(max_in_flight=N)`` on a local
  runtime, in its own process: at the default ``engine="auto"`` (a ``Predict`` runs async: tasks on the
  runtime's event loop) and with ``engine="threads"`` (a thread an example); at the defaults
  (``max_in_flight=64``) the same run is capped at 64 in flight (N / 64 × latency; computed, not run).
* **dspy.Evaluate** with ``num_threads=N`` (DSPy 3.4.1 in ``benchmarks/.venv-dspy``).

Per run: wall, the most requests in flight at the server (its ``/_sim/stats``), rows and whether each
example ended as exactly one row, the most threads the client process ran, its peak RSS and CPU time.

A second table, at the defaults (``Evaluate`` and ``LM`` as a new user writes them: 64 in flight): 1,000
examples at 50 ms (floor 1,280/s), and the client's CPU per example at 0 ms, for dspex (auto, threads)
and DSPy (``num_threads=64``), each in its own process.

    python -m benchmarks.bench_scale --defaults        (the second table alone)
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.request import urlopen

from benchmarks.bench_clients import DSPY_PY, HERE, simulator

ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
FAULT_TIMEOUTS = (None, 10.0, 5.0)  # the LM's timeout in the faults runs (None: its default, 30 s); a hung
# attempt gets twins (hedge="auto") and is cut there at the latest
KEY = "sk-bench"


def raise_file_limit() -> None:
    """Open files up to the hard limit (10,000 connections need 10,000 descriptors a side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stats(url: str, reset: bool = False) -> dict:
    with urlopen(f"{url}/_sim/stats{'?reset=1' if reset else ''}", timeout=30) as answer:
        return json.loads(answer.read())


def raw(url: str, n: int) -> dict:
    """N chat requests at once over asyncio streams, one connection each."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "question"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()

    async def one() -> bool:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head + body)
            answer = await reader.read()
            return answer.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    async def all_at_once() -> list:
        return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)

    start, cpu = time.perf_counter(), time.process_time()
    results = asyncio.run(all_at_once())
    failed = Counter(type(r).__name__ if isinstance(r, BaseException) else "not 200" for r in results if r is not True)
    return {"wall": time.perf_counter() - start, "ok": sum(r is True for r in results), "rows": n, "once": True,
            "errors": dict(failed.most_common(3)),
            "threads": threading.active_count(), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_s": time.process_time() - cpu}


def dspex_side(url: str, n: int, engine: str = "auto", in_flight: int | None = None, mode: str = "") -> dict:
    """Runs in its own process (``--side dspex``): one Evaluate of N examples, ``in_flight`` (default N)
    at once, on ``engine``; ``mode`` "lean": the result keeps no predictions (``keep_rows=False``, the journal
    has them); "faults=S": the LM's ``timeout`` is S seconds (a hung request is cut there)."""
    keep_rows = mode != "lean"
    import tempfile

    import dspex

    most = [threading.active_count()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            most.append(threading.active_count())

    with dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        wide = {"max_in_flight": in_flight or n}
        lm = dspex.LM("openai/sim", api_key=KEY, base_url=url + "/v1", cache=False, max_tokens=64,
                      **({} if in_flight == 64 else {"rpm": None, **wide}),
                      **({"timeout": float(mode.split("=")[1])} if mode.startswith("faults=") else {}))
        program = dspex.Predict("question -> answer", lm=lm)
        devset = [dspex.Example(question=f"question {i}", answer="ok").with_inputs("question") for i in range(n)]
        dspex.Evaluate(devset[:20], lambda e, p: p.answer == e.answer, max_concurrency=20, progress=False,
                       engine=engine)(program)
        stats(url, reset=True)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start, cpu = time.perf_counter(), time.process_time()
        concurrency = {} if in_flight == 64 else {"max_concurrency": in_flight or n}  # 64: the defaults
        result = dspex.Evaluate(devset, lambda e, p: p.answer == e.answer, progress=False, engine=engine,
                                keep_rows=keep_rows, journal=None if keep_rows else Path(tempfile.mkdtemp()) / "run.jsonl",
                                **concurrency)(program)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        done.set()
        indices = [r.index for r in result.rows]
        errors = Counter(type(r.error).__name__ for r in result.rows if r.error is not None)
        twins = lm.usage().hedged  # each twin sent leaves one attempt unused: itself or the one it hedged
    return {"wall": wall, "twins": twins, "ok": sum(r.error is None for r in result.rows), "rows": len(indices),
            "errors": dict(errors.most_common(3)),
            "once": sorted(indices) == list(range(n)), "threads": max(most),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_s": cpu}


def in_process(side: str, url: str, n: int, *options: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--side", side, url, str(n), *options],
                         capture_output=True, text=True, timeout=3600, cwd=HERE.parent)
    if out.returncode != 0:
        raise RuntimeError(f"the {side} side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dspy_side(url: str, n: int, threads: int | None = None) -> dict | None:
    if not DSPY_PY.exists():
        return None
    start = time.perf_counter()
    out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_evaluate_bench.py"), url, str(n), str(threads or n), "0"],
                         capture_output=True, text=True, timeout=3600, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    ok = round(measured["score"] * n / 100)  # (DSPy's score is a percentage of rows scored 1: the right answer)
    return {"wall": measured["wall"], "ok": ok, "rows": measured["rows"], "once": measured["rows"] == n,
            "threads": None, "rss_mb": None, "cpu_s": measured.get("cpu_s"), "errors": {}, "process_wall": time.perf_counter() - start}


def run(n: int = 10_000, latency: float = 2.0, repeats: int = 3) -> str:
    """The 10,000 table: the raw client and dspex's async engine ``repeats`` times, interleaved (the median
    run by wall is shown, its wall the median), the threads engine and DSPy once (they are far off)."""
    raise_file_limit()
    sides = [("raw asyncio client", lambda: in_process("raw", url, n), repeats),
             (f"dspex Evaluate, max_concurrency={n}, max_in_flight={n} (engine auto: async)",
              lambda: in_process("dspex", url, n, "auto"), repeats),
             (f"dspex Evaluate, max_concurrency={n}, max_in_flight={n}, engine='threads'",
              lambda: in_process("dspex", url, n, "threads"), 1),
             (f"dspy.Evaluate, num_threads={n}", lambda: dspy_side(url, n), 1)]
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in sides}
    with simulator("--answer", ANSWER, "--latency", f"{latency:g}") as (url, _):
        for round_ in range(repeats):
            for label, measure, times in sides:
                if round_ >= times:
                    continue
                stats(url, reset=True)
                m = measure()
                if m is None:
                    continue
                m["peak"] = stats(url)["peak"]
                runs[label].append(m)
    rows = [(label, median_run(found)) for label, found in runs.items() if found]
    raw_wall = rows[0][1]["wall"]
    lines = [f"{n:,} examples, simulator at {latency:g} s latency in its own process (floor {latency:g} s); "
             f"raw and async: the median of {repeats} interleaved runs", "",
             "| client | wall | vs raw | peak in flight at the server | rows ok | failures | each example one row | "
             "most threads | peak RSS | CPU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, m in rows:
        ok = "n/a" if m["ok"] is None else f"{m['ok']:,}"
        rss = "n/a" if m["rss_mb"] is None else f"{m['rss_mb']:.0f} MB"
        cpu = "n/a" if m["cpu_s"] is None else f"{m['cpu_s']:.1f} s"
        failures = ", ".join(f"{k} {v:,}" for k, v in m["errors"].items()) or "-"
        lines.append(f"| {label} | {m['wall']:.1f} s | {m['wall'] / raw_wall:.2f}× | {m['peak']:,} | {ok} | {failures} | "
                     f"{'yes' if m['once'] else 'NO'} | {m['threads'] or 'n/a'} | {rss} | {cpu} |")
    lines.append(f"| dspex at the defaults (max_in_flight=64) | ≥ {n / 64 * latency:.0f} s (computed: {n:,} / 64 × "
                 f"{latency:g} s) | | 64 | | | | | | |")
    return ("\n".join(lines) + "\n\n" + faults_at_scale(rows[1][1], n, latency) + "\n\n" + hundred_thousand(rows[1][1])
            + "\n\n" + defaults())


def median_run(found: list[dict]) -> dict:
    """The run of median wall (its other figures with it)."""
    return sorted(found, key=lambda m: m["wall"])[len(found) // 2]


def faults_at_scale(clean: dict, n: int = 10_000, latency: float = 2.0) -> str:
    """The async run again under 5% 500s, 5% 429s (Retry-After 1 s) and 1% hung connections (held 60 s),
    at each of FAULT_TIMEOUTS, each on a fresh simulator: every row once, and the wall against ``clean``'s.
    A hung attempt gets twins (hedge="auto": after twice the recent p95 latency) and is cut at the LM's
    timeout at the latest; without twins, an example hung twice ends no sooner than two timeouts and a
    latency after it is sent (the last column)."""
    found = []
    for timeout in FAULT_TIMEOUTS:
        with simulator("--answer", ANSWER, "--latency", f"{latency:g}", "--error", "500:0.05", "--error",
                       "429:0.05", "--hang", "0.01", "--hang-s", "60") as (url, _):
            stats(url, reset=True)
            m = in_process("dspex", url, n, "auto", str(n), *(() if timeout is None else (f"faults={timeout:g}",)))
            m["peak"] = stats(url)["peak"]
            found.append((timeout, m))
    lines = [f"{n:,} examples, {n:,} in flight, {latency:g} s latency, 5% 500 + 5% 429 + 1% hung (held 60 s), engine "
             "auto, hedging at its default (`hedge='auto'`), at three LM timeouts", "",
             "| LM timeout | wall | vs the clean run | twins sent (`usage.hedged`) | rows ok | "
             "failed rows | each example one row | peak in flight | most threads | without twins, a double hang "
             "ends after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for timeout, m in found:
        failures = ", ".join(f"{k} {v:,}" for k, v in m["errors"].items()) or "-"
        t = 30.0 if timeout is None else timeout
        lines.append(f"| {t:g} s{' (default)' if timeout is None else ''} | {m['wall']:.1f} s | "
                     f"{m['wall'] / clean['wall']:.2f}× | {m.get('twins', 0):,} | {m['ok']:,} | {failures} | "
                     f"{'yes' if m['once'] else 'NO'} | {m['peak']:,} | {m['threads']} | ≥ {2 * t + latency:g} s |")
    return "\n".join(lines)


def hundred_thousand(ten: dict, n: int = 100_000, in_flight: int = 10_000, latency: float = 2.0) -> str:
    """``n`` examples, ``in_flight`` at once, the result keeping no predictions (``keep_rows=False``, a
    journal as the full record): throughput against the 10,000 run's (``ten``), and peak RSS."""
    with simulator("--answer", ANSWER, "--latency", f"{latency:g}") as (url, _):
        stats(url, reset=True)
        m = in_process("dspex", url, n, "auto", str(in_flight), "lean")  # keep_rows=False
        m["peak"] = stats(url)["peak"]
    rate, ten_rate = n / m["wall"], 10_000 / ten["wall"]
    return "\n".join([
        f"{n:,} examples, {in_flight:,} in flight, {latency:g} s latency, `keep_rows=False` with a journal (engine auto)",
        "", "| wall | examples/s | of the 10,000 run's rate | peak in flight | rows ok | each example one row | "
        "most threads | peak RSS |", "|---|---|---|---|---|---|---|---|",
        f"| {m['wall']:.1f} s | {rate:,.0f} | {rate / ten_rate:.0%} | {m['peak']:,} | {m['ok']:,} | "
        f"{'yes' if m['once'] else 'NO'} | {m['threads']} | {m['rss_mb']:.0f} MB |"])


def defaults(n: int = 1000, latency: float = 0.05, repeats: int = 3) -> str:
    """1,000 examples at 50 ms and 64 in flight (the defaults), and CPU per example at 0 ms: medians of
    ``repeats`` interleaved runs, each client in its own process."""
    sides = (("dspex (engine auto: async)", lambda url, k: in_process("dspex", url, k, "auto", "64")),
             ("dspex, engine='threads'", lambda url, k: in_process("dspex", url, k, "threads", "64")),
             ("dspy.Evaluate, num_threads=64", lambda url, k: dspy_side(url, k, 64)))
    walls: dict[str, list[float]] = {label: [] for label, _ in sides}
    cpus: dict[str, list[float]] = {label: [] for label, _ in sides}
    for lat, into in ((latency, walls), (0.0, cpus)):
        with simulator("--answer", ANSWER, "--latency", f"{lat:g}") as (url, _):
            for _ in range(repeats):
                for label, side in sides:
                    m = side(url, n)
                    if m is None:
                        continue
                    into[label].append(m["wall"] if into is walls else
                                       (m["cpu_s"] * 1000 / n if m["cpu_s"] is not None else float("nan")))
    floor = 64 / latency
    lines = [f"At the defaults (64 in flight): {n:,} examples at {latency * 1000:g} ms (floor {floor:,.0f}/s), and "
             f"CPU per example at 0 ms; medians of {repeats} interleaved runs", "",
             "| client | examples/s at 50 ms | of the floor | vs DSPy | client CPU per example at 0 ms |",
             "|---|---|---|---|---|"]
    dspy_rate = n / statistics.median(walls[sides[2][0]]) if walls[sides[2][0]] else None
    for label, _ in sides:
        if not walls[label]:
            continue
        rate = n / statistics.median(walls[label])
        cpu = statistics.median(cpus[label]) if cpus[label] else float("nan")
        cpu_text = "n/a" if cpu != cpu else f"{cpu:.2f} ms"
        vs = f"{rate / dspy_rate:.2f}×" if dspy_rate else "n/a"
        lines.append(f"| {label} | {rate:,.0f}/s | {rate / floor:.0%} | {vs} | {cpu_text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--side":  # one client in a process of its own (its threads, memory and CPU alone)
        raise_file_limit()
        if args[1] == "raw":
            print(json.dumps(raw(args[2], int(args[3]))))
        else:
            print(json.dumps(dspex_side(args[2], int(args[3]), args[4], int(args[5]) if len(args) > 5 else None,
                                        args[6] if len(args) > 6 else "")))
    elif args and args[0] == "--defaults":
        print(defaults())
    else:
        print(run(*(int(args[0]),) if args else (), *(float(args[1]),) if len(args) > 1 else ()))
