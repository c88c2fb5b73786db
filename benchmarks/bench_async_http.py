"""aiohttp's ClientSession against httpx's AsyncClient as the client of an asyncio request engine, side by side
against the project's simulator (its own process); bench_scale's raw asyncio client is the 10k run's yardstick.

    python -m benchmarks.bench_async_http [--quick] [--repeats R] [--repeats-a R] [--only abc] [--timeout S]
    (isolated: unshare --pid --fork --mount-proc .venv/bin/python -m benchmarks.bench_async_http)
    (needs httpx, not a dependency of dspex: pip install httpx; not one of ./run bench's sections)

a. 10,000 POST /v1/chat/completions at once, 2.0 s latency, 10,000 connections allowed (floor 2.0 s); raw too;
b. 1,000 requests, 50 ms latency, <= 64 in flight (asyncio.Semaphore), warm keep-alive pool (floor 1280/s);
c. 2,000 requests, 0 ms latency, 64 in flight, warm pool: the client's CPU per request.
Each run is a fresh child process; runs are interleaved (repeat by repeat, client by client) and bounded (requests
not done 0.8 × --timeout s after the start count as "unfinished"; a child alive at --timeout s is killed by PID).
Over the timed part the child measures wall, peak in flight at the server (/_sim/stats, reset first), answers
(200 with the answer), failures by type, CPU (getrusage user+sys), peak RSS (and growth), most OS threads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from benchmarks.bench_clients import HERE, simulator
from benchmarks.bench_scale import ANSWER, KEY, raise_file_limit, raw, stats


@dataclass
class Scenario:
    key: str
    title: str
    n: int
    latency: float
    in_flight: int
    repeats: int
    clients: tuple[str, ...]


def cpu_seconds() -> float:  # user + sys
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def os_threads() -> int:
    """This process's OS threads, less this benchmark's own (named bench-...)."""
    return len(os.listdir("/proc/self/task")) - sum(t.name.startswith("bench-") for t in threading.enumerate())


async def drive(client: str, url: str, n: int, in_flight: int, deadline: float,
                report: Callable[[dict, list[str | None]], None]) -> None:
    """N requests through one session of ``client``, at most ``in_flight`` at once, for at most ``deadline`` s;
    reports the measurements and, per request, None or its failure before the session is closed."""
    endpoint, headers = url + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}",
                                                       "Content-Type": "application/json"}
    if client == "aiohttp":
        import aiohttp
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight, limit_per_host=0),
                                        timeout=aiohttp.ClientTimeout(total=deadline))

        async def post(body: bytes) -> tuple[int, bytes]:
            async with session.post(endpoint, data=body, headers=headers) as answer:
                return answer.status, await answer.read()
        close = session.close
    else:
        import httpx
        session = httpx.AsyncClient(limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
                                    timeout=httpx.Timeout(deadline))

        async def post(body: bytes) -> tuple[int, bytes]:
            answer = await session.post(endpoint, content=body, headers=headers)
            return answer.status_code, answer.content
        close = session.aclose
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> str | None:
        body = json.dumps({"model": "sim", "max_tokens": 64,
                           "messages": [{"role": "user", "content": f"question {i}"}]}).encode()
        try:
            async with gate:
                status, payload = await post(body)
            if status != 200:
                return f"HTTP {status}"
            return None if json.loads(payload)["choices"][0]["message"]["content"] == ANSWER else "wrong answer"
        except Exception as exc:  # noqa: BLE001 - every failure is counted by its type
            return f"{type(exc).__name__}: {exc!r}"[:200]

    try:
        if in_flight < n:  # warm: the keep-alive pool holds in_flight open connections before the clock starts
            await asyncio.gather(*(one(-1 - i) for i in range(in_flight)))
        stats(url, reset=True)
        rss0, start, cpu0 = rss_mb(), time.perf_counter(), cpu_seconds()
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        once = threading.Lock()

        def finish() -> None:  # reading the tasks' states from the timer's thread is safe enough here (GIL)
            if once.acquire(blocking=False):
                late = f"unfinished: not done {deadline:g} s after the start"
                report({"wall": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu0, "rss_base_mb": rss0},
                       [t.result() if t.done() else late for t in tasks])

        def cut_off() -> None:  # a thread's timer: a loop too busy to run its callbacks would miss its own timeout
            finish()
            os._exit(0)

        (timer := threading.Timer(deadline, cut_off)).name = "bench-timer"
        timer.start()
        await asyncio.wait(tasks)
        timer.cancel()
        finish()
    finally:
        await close()


def child(client: str, url: str, n: int, in_flight: int, deadline: float) -> None:
    """One client's run in this (fresh) process; prints its measurements as JSON as soon as they are taken."""
    raise_file_limit()
    if client != "raw":
        __import__(client)  # (imported before the RSS baseline)
    most, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            most[0] = max(most[0], os_threads())

    def emit(m: dict) -> None:
        done.set()
        m.update(peak=stats(url)["peak"], rss_mb=rss_mb(), n=n, threads=max(most[0], os_threads()))
        print(json.dumps(m), flush=True)

    def report(m: dict, results: list[str | None]) -> None:
        failures = [r for r in results if r is not None]
        emit({**m, "ok": n - len(failures), "errors": dict(Counter(f.split(":")[0] for f in failures).most_common()),
              "samples": {f.split(":")[0]: f for f in reversed(failures)}})

    threading.Thread(target=sample, name="bench-sampler", daemon=True).start()
    if client == "raw":
        stats(url, reset=True)
        rss0, cpu0 = rss_mb(), cpu_seconds()
        r = raw(url, n)
        emit({"wall": r["wall"], "cpu_s": cpu_seconds() - cpu0, "rss_base_mb": rss0, "ok": r["ok"],
              "errors": r["errors"]})
    else:
        asyncio.run(drive(client, url, n, in_flight, deadline, report))


def in_child(client: str, url: str, n: int, in_flight: int, timeout: float) -> dict:
    """``child`` in a fresh process (its requests cut off at 0.8 × ``timeout``), killed by its PID if it outlives
    ``timeout`` (or on any failure here); its measurements count if it printed them before."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_async_http", "--child", client, url, str(n),
                             str(in_flight), str(timeout * 0.8)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE.parent)
    killed = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
    finally:
        if proc.poll() is None:  # (timed out, or interrupted here)
            proc.kill()
    if killed:
        out, err = proc.communicate()
    printed = [line for line in out.splitlines() if line.startswith("{")]
    if printed:
        return json.loads(printed[-1])
    return {"failed": f"timeout after {timeout:g} s (killed)" if killed else
            f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}


def drained(url: str, limit: float = 60.0) -> None:
    """Wait until the server holds no connection of the previous run (at most ``limit`` s)."""
    end = time.monotonic() + limit
    while stats(url)["connections"] > 1 and time.monotonic() < end:  # (1: this stats request's own)
        time.sleep(0.2)


def rate(m: dict) -> float:  # answers (200 with the answer) a second
    return m["ok"] / m["wall"]


def cpu_ms(m: dict) -> float:  # CPU per finished request (answered or failed, not cut off), ms
    return m["cpu_s"] * 1e3 / max(1, m["n"] - m["errors"].get("unfinished", 0))


HEAD = ("| client | runs | wall | req/s | of floor | peak in flight | 200 ok | failures | CPU | CPU/request | peak RSS "
        "(run's growth) | most threads |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(s: Scenario, label: str, ms: list[dict], runs: str) -> str:
    def med(f: Callable[[dict], float]) -> float:  # a field's median over the runs
        return statistics.median(f(m) for m in ms)
    floor = f"{med(rate) * s.latency / s.in_flight:.0%}" if s.latency else "-"
    kinds = ", ".join(sorted({k for m in ms for k in m["errors"]}))
    failures = (", ".join(f"{k} {v:,}" for k, v in ms[0]["errors"].items()) if len(ms) == 1 else
                f"{med(lambda m: m['n'] - m['ok']):,.0f} ({kinds})") if kinds else "-"
    return (f"| {label} | {runs} | {med(lambda m: m['wall']):.2f} s | {med(rate):,.0f} | {floor} | "
            f"{med(lambda m: m['peak']):,.0f} | {med(lambda m: m['ok']):,.0f} | {failures} | "
            f"{med(lambda m: m['cpu_s']):.2f} s | {med(cpu_ms):.3f} ms | "
            f"{med(lambda m: m['rss_mb']):.0f} MB (+{med(lambda m: m['rss_mb'] - m['rss_base_mb']):.0f}) | "
            f"{med(lambda m: m['threads']):.0f} |")


def run_scenario(s: Scenario, timeout: float) -> str:
    """Every client ``s.repeats`` times, interleaved, against one simulator; returns the scenario's tables."""
    runs: dict[str, list[dict]] = {c: [] for c in s.clients}
    per_run = []
    with simulator("--answer", ANSWER, "--latency", f"{s.latency:g}") as (url, _):
        for repeat in range(s.repeats):
            for client in s.clients:
                drained(url)
                m = in_child(client, url, s.n, s.in_flight, timeout)
                runs[client].append(m)
                line = (f"| {s.key}{repeat + 1} {client} | {m['failed']} |" if "failed" in m else
                        row(s, f"{s.key}{repeat + 1} {client}", [m], "1"))
                per_run.append(line)
                print(line, file=sys.stderr, flush=True)
    lines = [f"**{s.key}. {s.title}**", "", HEAD]
    for client, ms in runs.items():
        done = [m for m in ms if "failed" not in m]
        lost = "; ".join(m["failed"] for m in ms if "failed" in m)
        if done:
            lines.append(row(s, client, done, f"{len(done)}/{len(ms)}" + (f" ({lost})" if lost else "")))
        else:
            lines.append(f"| {client} | 0/{len(ms)} ({lost}) |")
    lines += ["", "<details><summary>per run</summary>", "", HEAD, *per_run, "", "</details>"]
    samples = {(c, k): v for c, ms in runs.items() for m in ms for k, v in m.get("samples", {}).items()}
    if samples:
        lines += ["", "Failures seen (one message each):", *(f"* {c}: `{v}`" for (c, _), v in samples.items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quick check: 1,000 at once, 200 and 300 requests, R=1")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each client in b and c")
    parser.add_argument("--repeats-a", type=int, default=2, help="runs of each client in a")
    parser.add_argument("--only", default="abc", help="the scenarios to run, e.g. 'a' or 'bc'")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a child may take before it is killed")
    args = parser.parse_args()
    raise_file_limit()
    n_a, n_b, n_c = (1000, 200, 300) if args.quick else (10_000, 1000, 2000)
    ra, r = (1, 1) if args.quick else (args.repeats_a, args.repeats)
    scenarios = [Scenario("a", f"{n_a:,} at once, 2.0 s latency, {n_a:,} connections allowed (floor 2.0 s)",
                          n_a, 2.0, n_a, ra, ("aiohttp", "httpx", "raw")),
                 Scenario("b", f"{n_b:,} requests, 50 ms latency, 64 in flight, warm pool (floor 1280/s)",
                          n_b, 0.05, 64, r, ("aiohttp", "httpx")),
                 Scenario("c", f"{n_c:,} requests, 0 ms latency, 64 in flight, warm pool: client CPU per request",
                          n_c, 0.0, 64, r, ("aiohttp", "httpx"))]
    import aiohttp
    try:
        import httpx
    except ImportError:
        raise SystemExit("this comparison needs httpx, which dspex does not depend on: pip install httpx") from None
    print(f"aiohttp {aiohttp.__version__}, httpx {httpx.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; medians of interleaved runs, each in a fresh process\n")
    for s in scenarios:
        if s.key in args.only:
            print(run_scenario(s, args.timeout) + "\n", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        client, url, n, in_flight, deadline = sys.argv[2:7]
        child(client, url, int(n), int(in_flight), float(deadline))
    else:
        main()
