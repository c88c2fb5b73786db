"""run_distributed over hosts in network namespaces: examples spread over the hosts, one row each,
even when a host is torn down mid-run; what the leader refuses to start, with the fix in the message."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

import dspex
from dspex.testing import Faults, ProviderServer
from tests.conftest import pids_titled, wait_until
from tests.netns import Network

from .test_evaluate import KEY, answer, devset, exact

pytestmark = pytest.mark.multihost
HOST_PORT = 19300


@contextmanager
def cluster(tmp_path, n_hosts: int = 2, latency: float = 0.02):
    """A leader runtime and simulator on the bridge, and ``n_hosts`` dspex hosts joined to it."""
    with Network(n_hosts) as net, \
            ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=latency), host=net.leader_ip) as server, \
            dspex.runtime("tcp", bind_host=net.leader_ip, peers=[h.ip for h in net.hosts], cache_dir=tmp_path,
                          log_level=None) as rt:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{rt.actors.admin_port}", HOST_PORT, {"OPENAI_API_KEY": KEY})
        lm = dspex.LM("openai/eval", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False)
        yield net, server, rt, dspex.Predict("question -> answer", lm=lm), hosts


def test_examples_spread_over_the_hosts_one_row_each(tmp_path):
    with cluster(tmp_path) as (net, server, rt, program, hosts):
        data = devset(200)
        result = dspex.Evaluate(data, exact, max_concurrency=16, workers=1, progress=False).run_distributed(
            program, hosts=hosts)
        assert [r.index for r in result.rows] == list(range(200))
        assert result.score == 100.0, result.to_table()
        by_host = {h: sum(r.worker.endswith("@" + h) for r in result.rows) for h in hosts}
        assert all(n > 0 for n in by_host.values()), by_host
        assert sum(by_host.values()) == 200
        assert len(server.successes()) == 200  # no example asked twice
        total = rt.usage().total  # the leader's ledger saw every call the hosts made, reported (relayed by the
        assert total.requests == 200 and total.ok == 200 and total.unconfirmed_calls == 0  # coordinator), none swept


def test_a_host_torn_down_mid_run_loses_no_example(tmp_path):
    with cluster(tmp_path, latency=0.05) as (net, server, rt, program, hosts):
        data = devset(300)
        torn: list[bool] = []

        def tear_down_first_host():
            if wait_until(lambda: len(server.log) > 80, timeout=60):
                net.tear_down(0)
                torn.append(True)

        threading.Thread(target=tear_down_first_host, daemon=True).start()
        result = dspex.Evaluate(data, exact, max_concurrency=16, workers=1, progress=False,
                                timeout_per_example=60).run_distributed(program, hosts=hosts, lost_after=3.0)
        assert torn, "the host was not torn down"
        assert [r.index for r in result.rows] == list(range(300))
        assert result.score == 100.0, result.to_table()
        assert not result.errors
        rerun = [r for r in result.rows if r.attempts > 1]
        assert rerun and all(r.worker.endswith("@" + hosts[1]) for r in rerun)
        assert sum(r.worker.endswith("@" + hosts[0]) for r in result.rows) > 0  # it did work before it went
        # what the lost host had in flight was answered (and billed): its leases are booked at their maximum
        # (before: the provider answered 309 requests for these 300 examples; the ledger said 300)
        billed = sum(r.prompt_tokens + r.completion_tokens for r in server.log)
        assert result.usage.requests + result.usage.retries >= len(server.log)
        assert result.usage.total_tokens >= billed


def test_a_worker_killed_on_a_host_is_restarted_there(tmp_path):
    """kill -9 of one remote worker process (its host stays up): its supervisor on the leader restarts
    it on the same host, its examples run again, one row each."""
    with cluster(tmp_path, latency=0.05) as (net, server, rt, program, hosts):
        title = f"dspex: eval-worker 1@{hosts[0]}".encode()
        killed: list[int] = []
        restarted_in: list[str] = []  # network namespaces: of the killed worker, then of its successor

        def kill_remote_worker():
            pids = wait_until(lambda: len(server.log) > 60 and pids_titled(title), timeout=60)
            if pids:
                restarted_in.append(os.readlink(f"/proc/{pids[0]}/ns/net"))  # where it ran
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                new = wait_until(lambda: [p for p in pids_titled(title) if p != pids[0]], timeout=10)
                if new:
                    restarted_in.append(os.readlink(f"/proc/{new[0]}/ns/net"))

        threading.Thread(target=kill_remote_worker, daemon=True).start()
        result = dspex.Evaluate(devset(300), exact, max_concurrency=16, workers=1, progress=False,
                                timeout_per_example=60).run_distributed(program, hosts=hosts, lost_after=5.0)
        assert killed, "no remote worker was killed"
        assert [r.index for r in result.rows] == list(range(300)) and result.score == 100.0
        assert any(r.attempts > 1 for r in result.rows)  # the killed worker's examples ran again
        assert len(restarted_in) == 2 and restarted_in[0] == restarted_in[1]  # restarted on its own host
        assert restarted_in[0] != os.readlink("/proc/self/ns/net")


def test_what_run_distributed_refuses(tmp_path):
    data = devset(3)
    program = dspex.Predict("question -> answer")
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None):
        with pytest.raises(dspex.ConfigError, match="tcp runtime"):
            dspex.Evaluate(data, exact, progress=False).run_distributed(program, hosts=["10.0.0.6:1900"])
    with Network(1) as net, dspex.runtime("tcp", bind_host=net.leader_ip, peers=[net.hosts[0].ip],
                                          cache_dir=tmp_path, log_level=None):
        evaluate = dspex.Evaluate(data, exact, progress=False)
        with pytest.raises(dspex.ConfigError, match="ip:port"):
            evaluate.run_distributed(program, hosts=[net.hosts[0].ip])
        with pytest.raises(dspex.ConfigError, match="not among the runtime's peers"):
            evaluate.run_distributed(program, hosts=["10.0.0.99:1900"])
        with pytest.raises(dspex.ConfigError, match="python -m dspex host --leader"):
            evaluate.run_distributed(program, hosts=[f"{net.hosts[0].ip}:{HOST_PORT}"], join_timeout=0.5)


def test_the_distributed_example_runs_and_leaves_nothing_behind():
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, str(root / "examples" / "distributed_eval.py"), "--n", "1200",
                          "--faults", "2"], capture_output=True, text=True, timeout=240, cwd=root)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "1200 rows for 1200 examples (each exactly once), score 100.00%" in out.stdout, out.stdout
    assert "SIGSTOP host 2" in out.stdout and "link of host 3 down" in out.stdout
    assert "ledger >= billed: yes" in out.stdout


def cli_workdir(tmp_path, **files: int) -> None:
    """What a ``dspex`` command line on the leader reads: a metric module beside it, JSONL files of ``n``
    examples each (``dev=40``: dev.jsonl, questions w0.. answered W0..), and a saved program."""
    import json

    (tmp_path / "task_metric.py").write_text("def exact(example, pred, trace=None):\n"
                                              "    return pred.answer == example.answer\n")
    for name, n in files.items():
        prefix = {"dev": "w", "train": "t"}[name]
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"question": f"{prefix}{i}", "answer": f"{prefix.upper()}{i}"}) + "\n" for i in range(n)))
    with dspex.runtime("local", cache_dir=tmp_path / "save-cache", log_level="error"):
        dspex.Predict("question -> answer").save(tmp_path / "program.json")


def test_dspex_eval_with_hosts_runs_end_to_end(tmp_path):
    """The command line as a leader: hosts started first (they join within seconds of the leader coming up),
    then ``dspex eval --hosts ... --bind ... --port ...``; every example one row, made on the hosts."""
    import json
    import subprocess

    from tests.dspex.teleprompt.conftest import answer as cli_answer

    cli_workdir(tmp_path, dev=40)
    leader_port = HOST_PORT + 1
    with Network(2) as net, ProviderServer(answer=cli_answer, api_key=KEY, host=net.leader_ip) as server:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{leader_port}", HOST_PORT, {"OPENAI_API_KEY": KEY})
        env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(tmp_path / "cache")}
        out = subprocess.run([sys.executable, "-m", "dspex", "eval", "program.json", "--data", "dev.jsonl",
                              "--metric", "task_metric:exact", "--model", "openai/task", "--base-url",
                              server.base_url(), "--hosts", *hosts, "--bind", net.leader_ip, "--port",
                              str(leader_port), "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["examples"] == 40 and summary["failed"] == 0
        assert len(server.successes()) == 40  # each example asked once, by the hosts
        assert summary["usage"]["requests"] == 40  # and the leader's ledger saw every one


def stop_host_supervisor(rt, host: str) -> None:
    """Stop the supervisor of ``host`` in the evaluation pool under the runtime's root."""
    from supervision import Kind, SupervisorRef

    root = SupervisorRef(rt.actors.root, "root", Kind.SUPERVISOR, rt.actors)
    pools = [top for top in root.which_children() if top.ref is not None and top.id.endswith("pool")]
    assert len(pools) == 1, pools
    pool = SupervisorRef(pools[0].ref.address, pools[0].id, Kind.SUPERVISOR, rt.actors)
    pool.terminate_child(f"host:{host}", timeout=30)


def test_a_restarted_host_is_used_again_in_the_same_run(tmp_path):
    """Every process of a host is killed mid-run and its supervisor on the leader is gone (as when restarts on
    the dead node exhaust it); the host is started again: the pool starts its supervisor again
    (``host_revived``) and the host takes examples in the same run."""
    import time

    with cluster(tmp_path, latency=0.05) as (net, server, rt, program, hosts):
        counts: dict = {}

        def restart_host() -> None:
            wait_until(lambda: len(server.log) >= 100, timeout=60)
            net.kill(0)
            counts["killed_at"] = len(server.log)
            time.sleep(3)  # its workers' exits reach the leader; their restarts on the dead node fail
            stop_host_supervisor(rt, hosts[0])  # as when those restarts exhaust its intensity: it gives up
            proc = net.spawn(0, [sys.executable, "-m", "dspex", "host", "--leader",
                                 f"{net.leader_ip}:{rt.actors.admin_port}", "--bind", net.hosts[0].ip,
                                 "--port", str(HOST_PORT)], env={"OPENAI_API_KEY": KEY})
            counts["ready"] = proc.stdout.readline()
            counts["restarted_at"] = len(server.log)

        helper = threading.Thread(target=restart_host, daemon=True)
        helper.start()
        result = dspex.Evaluate(devset(3000), exact, max_concurrency=8, workers=1,
                                progress=False).run_distributed(program, hosts=hosts, lost_after=2.0)
        helper.join(timeout=5)
        assert counts.get("ready", "").startswith("dspex host ready"), counts
        assert counts["restarted_at"] < 2600, counts  # the run still had work when the host came back
        assert [r.index for r in result.rows] == list(range(3000)) and not result.errors
        by_host = sum(r.worker.endswith("@" + hosts[0]) for r in result.rows)
        # it worked again after its restart: with its supervisor stopped, only the pool's revive could do that
        assert by_host > counts["killed_at"] // 2 + 100, (by_host, counts)


def test_dspex_optimize_with_hosts_runs_end_to_end(tmp_path):
    """``dspex optimize --hosts ...``: every evaluation of the compile runs on the hosts (its rows name their
    workers there), and the compile finds what it finds on one machine."""
    import json
    import subprocess

    from tests.dspex.teleprompt.conftest import answer as cli_answer

    cli_workdir(tmp_path, dev=12, train=16)
    leader_port = HOST_PORT + 2
    with Network(2) as net, ProviderServer(answer=cli_answer, api_key=KEY, host=net.leader_ip) as server:
        hosts = net.start_dspex_hosts(f"{net.leader_ip}:{leader_port}", HOST_PORT, {"OPENAI_API_KEY": KEY})
        env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(tmp_path / "cache")}
        out = subprocess.run([sys.executable, "-m", "dspex", "optimize", "program.json", "--optimizer",
                              "random-search", "--train", "train.jsonl", "--dev", "dev.jsonl", "--metric",
                              "task_metric:exact", "--model", "openai/task", "--base-url", server.base_url(),
                              "--out", "compiled.json", "--run-dir", "run", "--hosts", *hosts, "--bind",
                              net.leader_ip, "--port", str(leader_port), "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["score"] == 100.0 and summary["baseline"] == 50.0 and summary["stopped"] == "done"
        usage = summary["usage"]  # the leader's ledger saw every call the hosts made (and the cache's answers)
        assert usage["requests"] - usage["cache_hits"] == len(server.log), usage
    workers = {json.loads(line).get("worker", "") for journal in (tmp_path / "run").rglob("*.jsonl")
               for line in journal.read_text().splitlines() if '"worker"' in line}
    assert workers and all(any(w.endswith("@" + h) for h in hosts) for w in workers if w), workers
    assert (tmp_path / "compiled.json").exists()
