"""Evaluate across hosts on one machine: two network namespaces join this process's runtime, one is lost mid-run.

    ./run hosts            (root: it makes network namespaces; or python examples/distributed_eval.py)

It starts the provider simulator and a ``tcp`` runtime on a private bridge, two ``python -m dspex host``
processes in their own namespaces, and evaluates 400 examples with ``run_distributed``; after a while
the first host is torn down (link cut, every process in it killed). The table shows which host answered
what, and that every example still ended as exactly one row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter

import dspex
from dspex.testing import Faults, ProviderServer
from dspex.testing.netns import Network, NetworkUnavailable

HOST_PORT = 19500
KEY = "sk-example-not-a-secret"


def answer(request) -> str:
    question = request.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return f"[[ ## answer ## ]]\n{question.upper()}\n\n[[ ## completed ## ]]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--keep-hosts", action="store_true", help="do not tear the first host down")
    args = parser.parse_args(argv)
    try:
        net = Network(2)
    except NetworkUnavailable as exc:
        print(f"cannot make network namespaces here: {exc}", file=sys.stderr)
        return 2
    os.environ["OPENAI_API_KEY"] = KEY  # the hosts read their key from their own environment
    with net, ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.05), host=net.leader_ip) as server, \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts],
                          cache_dir=tempfile.mkdtemp(prefix="dspex-example-"), log_level="error") as rt:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", HOST_PORT, {"OPENAI_API_KEY": KEY})
        for i, (address, host) in enumerate(zip(hosts, net.hosts)):
            print(f"host {i + 1}: dspex host ready at {address} (namespace {host.ns})", flush=True)
        lm = dspex.LM("openai/sim", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False)
        devset = [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(args.n)]

        def metric(example, prediction, trace=None):
            return prediction.answer == example.answer

        if not args.keep_hosts:
            def tear_down() -> None:
                deadline = time.monotonic() + 60
                while len(server.log) < args.n // 4 and time.monotonic() < deadline:
                    time.sleep(0.02)
                print(f"tearing down host 1 ({hosts[0]}) after {len(server.log)} requests", flush=True)
                net.tear_down(0)

            threading.Thread(target=tear_down, daemon=True).start()
        result = dspex.Evaluate(devset, metric, max_concurrency=16, workers=1, progress=False).run_distributed(
            dspex.Predict("question -> answer", lm=lm), hosts=hosts, lost_after=3.0)
        by_worker = Counter(row.worker for row in result.rows)
        print(f"\n{len(result.rows)} rows for {args.n} examples, score {result.score:.2f}%, "
              f"{sum(r.attempts > 1 for r in result.rows)} examples ran again after the loss, "
              f"{len(result.errors)} failed, {result.wall_s:.1f}s")
        for worker, count in sorted(by_worker.items()):
            print(f"  {worker:<32} {count} rows")
        print(f"ledger on the leader: {rt.usage().total.requests} requests; the simulator answered "
              f"{len(server.successes())}")
    print("runtime closed, host processes stopped, namespaces removed")
    return 0 if len(result.rows) == args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
