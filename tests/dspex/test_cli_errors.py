"""Clear errors instead of tracebacks (issue 20, sections 3 and 5): hostile files and paths given to the real
``dspex`` command are one line on stderr naming the fix, exit 2, and not one request sent to the provider
(every path is checked before the first request); ``dspex doctor`` with loopback down says FIX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import dspex
from dspex.testing import Faults, ProviderServer
from dspex.testing.netns import available as netns_unavailable

from .teleprompt.conftest import answer as fewshot_answer
from .test_cli import KEY, workdir  # noqa: F401 - the fixture: a saved program, data and a metric module

EVAL = ["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact", "--model", "openai/task"]
OPTIMIZE = ["optimize", "program.json", "--optimizer", "random-search", "--train", "train.jsonl", "--dev",
            "dev.jsonl", "--metric", "task_metric:exact", "--model", "openai/task"]


def run(workdir, args, env=None, timeout=180):
    full = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(workdir / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "dspex", *args], cwd=workdir, env=full, capture_output=True,
                          text=True, timeout=timeout)


def prepare(workdir, case: str) -> tuple[list[str], dict]:
    """The command line (and environment) of each hostile case, with the files it needs."""
    if case == "metric raises at import":
        (workdir / "raising_metric.py").write_text('raise RuntimeError("the model file is missing")\n'
                                                   "def exact(example, pred):\n    return True\n")
        return [*EVAL[:-4], "--metric", "raising_metric:exact", *EVAL[-2:]], {}
    if case == "metric has a syntax error":
        (workdir / "broken_metric.py").write_text("def exact(example, pred:\n    return True\n")
        return [*EVAL[:-4], "--metric", "broken_metric:exact", *EVAL[-2:]], {}
    if case == "--module raises at import":
        (workdir / "my_modules.py").write_text("import sys\nsys.exit('no GPU here')\n")
        return [*EVAL, "--module", "my_modules"], {}
    if case == "--data is not UTF-8":
        (workdir / "latin1.jsonl").write_bytes(b'{"question": "w1", "answer": "W1"}\n'
                                               b'{"question": "caf\xe9", "answer": "X"}\n')
        return ["eval", "program.json", "--data", "latin1.jsonl", *EVAL[4:]], {}
    if case == "--journal in a missing folder":
        return [*EVAL, "--journal", "no-such-folder/rows.jsonl"], {}
    if case == "--out in a missing folder":
        return [*OPTIMIZE, "--out", "no-such-folder/compiled.json"], {}
    if case == "--run-dir is a file":
        (workdir / "a-file").write_text("")
        return [*OPTIMIZE, "--out", "compiled.json", "--run-dir", "a-file/run"], {}
    if case == "--hosts with part of a TLS setting":
        return [*EVAL, "--hosts", "10.9.9.9:1900", "--bind", "127.0.0.1", "--tls-cert", "host.crt"], {}
    if case == "DSPEX_CACHE_DIR is a file":
        (workdir / "cache-file").write_text("not a folder")
        return EVAL, {"DSPEX_CACHE_DIR": str(workdir / "cache-file")}
    raise AssertionError(case)


@pytest.mark.parametrize("case, message", [
    ("metric raises at import", "importing 'raising_metric' raised RuntimeError: the model file is missing"),
    ("metric has a syntax error", "broken_metric.py:1: "),
    ("--module raises at import", "importing 'my_modules' raised SystemExit: no GPU here"),
    ("--data is not UTF-8", "--data latin1.jsonl:2: not UTF-8 (byte 0xe9); save the file as UTF-8"),
    ("--journal in a missing folder", "the folder no-such-folder does not exist; create it"),
    ("--out in a missing folder", "--out no-such-folder/compiled.json: the folder no-such-folder does not exist"),
    ("--run-dir is a file", "--run-dir a-file/run (its parent a-file) is a file, not a folder"),
    ("DSPEX_CACHE_DIR is a file", "cache-file is a file, not a folder; set DSPEX_CACHE_DIR to a folder"),
    ("--hosts with part of a TLS setting", "TLS needs all three of --tls-cert, --tls-key, --tls-ca: --tls-key, "
                                           "--tls-ca not given"),
])
def test_a_hostile_file_or_path_is_one_line_exit_2_and_nothing_sent(workdir, case, message):
    args, env = prepare(workdir, case)
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        out = run(workdir, [*args, "--base-url", sim.base_url()], env)
        sent = len(sim.log)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert sent == 0  # checked before the first request: nothing paid for
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith(f"dspex {args[0]}: ") and message in lines[0], lines[0]
    assert out.stdout == ""


def test_a_syntax_error_names_the_file_the_line_and_the_fix(workdir):
    args, _ = prepare(workdir, "metric has a syntax error")
    out = run(workdir, args)
    assert out.returncode == 2 and "fix the syntax error in 'broken_metric'" in out.stderr


def test_an_out_folder_removed_during_the_run_keeps_the_paid_for_program_in_a_spare_file(workdir):
    (workdir / "sub").mkdir()
    env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(workdir / "cache")}
    with ProviderServer(answer=fewshot_answer, api_key=KEY, faults=Faults(latency=0.1)) as sim:
        proc = subprocess.Popen([sys.executable, "-m", "dspex", "optimize", "program.json", "--optimizer", "bootstrap",
                                 "--train", "train.jsonl", "--metric", "task_metric:exact", "--model", "openai/task",
                                 "--base-url", sim.base_url(), "--out", "sub/compiled.json", "--concurrency", "1",
                                 "--json"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        while not sim.log and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        (workdir / "sub").rmdir()  # checked at the start; gone by the end
        stdout, stderr = proc.communicate(timeout=180)
    spares = list(workdir.glob("dspex-compiled-*.json"))
    assert proc.returncode == 1 and len(spares) == 1, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (f"dspex optimize: could not write --out sub/compiled.json (No such file "
                                               f"or directory); the compiled program is saved in {spares[0]}")
    with dspex.runtime("local", cache_dir=workdir / "c2", log_level="error"):
        assert dspex.load(spares[0]).demos  # the compiled program, demos and all


@pytest.mark.multihost
def test_doctor_with_loopback_down_prints_a_fix_line_instead_of_a_traceback(workdir):
    """In a fresh network namespace ``lo`` is down: the process bases cannot bind 127.0.0.1."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    ns = f"dspex-lo-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISION_", "THESPIAN_"))}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        runs, left = {}, []
        for flag in ("--json", None):  # (a process left running would hold the pipes open: a timeout)
            runs[flag] = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "dspex", "doctor",
                                         *([flag] if flag else [])], cwd=workdir, env=env, capture_output=True,
                                        text=True, timeout=120)
            left += subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        # the start itself fails there (its admin cannot answer): a typed error, and its admin is not left behind
        direct = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", MULTIPROC_START], cwd=workdir,
                                env=env, capture_output=True, text=True, timeout=120)
        left += subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), 9)  # what the doctor left there, if anything: found by namespace, not by name
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    assert left == []  # nothing the doctor started outlives it
    as_json, as_text = runs["--json"], runs[None]
    assert as_json.returncode == 1 and "Traceback" not in as_json.stderr + as_text.stderr, as_json.stderr[-3000:]
    checks = {c["check"]: c for c in json.loads(as_json.stdout)["checks"]}
    assert not checks["loopback"]["ok"] and "ip link set lo up" in checks["loopback"]["fix"]
    assert not checks["actor system: multiproc"]["ok"] and checks["actor system: multiproc"]["fix"]
    assert checks["actor system: local"]["ok"]
    assert as_text.returncode == 1
    assert any(line.startswith("FIX  loopback") and "ip link set lo up" in line for line in as_text.stdout.splitlines())
    assert direct.stdout.startswith("SupervisionError: the actor system did not start on 127.0.0.1:"), direct
    assert "ip link set lo up" in direct.stdout


MULTIPROC_START = """
from supervision import ActorRuntime, SupervisionError
try:
    ActorRuntime("multiproc", "lo-down").start()
except SupervisionError as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


# --- nothing outlives an interrupted or failed start (issue 20, section 5: the orphaned MultiProcAdmins) ---

SUBREAPER = os.path.join(os.path.dirname(__file__), "subreaper.py")
START_FAULTS = """
import os, signal, sys

import supervision.runtime
import supervision.tcp as tcp

import dspex

cache = sys.argv[1]


def after(original):  # one Ctrl-C, right after ``original`` first returned, still inside the start
    fired = []

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return result
    return wrapped


def failing(what):
    def wrapped(*args, **kwargs):
        raise OSError(f"injected: {what} failed")
    return wrapped


Runtime = supervision.runtime.ActorRuntime
faults = {  # what to replace, and with what, for one start
    "ctrl-c once the admin is up": (tcp, "reap_new_zombies", after),  # ActorSystem() returned, start_system not
    "ctrl-c once the root is up": (Runtime, "_request", after),
    "the watchdog cannot start": (tcp, "start_watchdog", lambda f: failing("the watchdog")),
    "dspex's own tree cannot start": (Runtime, "start_supervisor", lambda f: failing("start_supervisor")),
}
for moment in sys.argv[2:]:
    owner, name, make = faults[moment]
    original = getattr(owner, name)
    setattr(owner, name, make(original))
    try:
        with dspex.runtime("multiproc", cache_dir=cache, log_level="error"):
            print("started despite", moment, file=sys.stderr)
    except (KeyboardInterrupt, OSError) as exc:
        print(moment, "->", type(exc).__name__, file=sys.stderr)
    finally:
        setattr(owner, name, original)
"""
MOMENTS = ["ctrl-c once the admin is up", "ctrl-c once the root is up", "the watchdog cannot start",
           "dspex's own tree cannot start"]


def reaped(argv, cwd, env, signal_name=None, moment="admin", delay=0.0, grace=5.0) -> dict:
    """Run ``argv`` under subreaper.py: its exit code and the descendants left alive after it exited."""
    spec = {"argv": argv, "cwd": str(cwd), "env": env, "signal": signal_name, "moment": moment, "delay": delay,
            "grace": grace}
    out = subprocess.run([sys.executable, SUBREAPER, json.dumps(spec)], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_runtime_whose_start_is_interrupted_or_fails_leaves_no_process(tmp_path):
    """One process, four starts, each stopped at another moment; whatever any of them forked and left
    running is still running when the process exits, re-parented to the subreaper: found by parentage."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    report = reaped([sys.executable, "-c", START_FAULTS, str(tmp_path / "cache"), *MOMENTS], tmp_path, env)
    assert report["returncode"] == 0, report
    for moment, error in zip(MOMENTS, ["KeyboardInterrupt", "KeyboardInterrupt", "OSError", "OSError"]):
        assert f"{moment} -> {error}" in report["stderr"], report
    assert report["seen"] >= 4  # every start did fork (its admin at least)
    assert report["left"] == {}, report


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, moment, delay", [
    ("SIGINT", "admin", 0.0),  # while ActorSystem() waits for its admin
    ("SIGTERM", "admin", 0.0),
    ("SIGINT", "admin", 0.4),  # the root, the watchdog, dspex's own tree
    ("SIGTERM", "admin", 0.8),
    ("SIGTERM", "admin", 1.6),  # the workers starting, the first requests
    (None, "admin", 0.0),  # no signal: a bad --model found after the actor system started
])
def test_the_cli_interrupted_or_failing_during_start_up_leaves_no_process(workdir, signal_name, moment, delay):
    with ProviderServer(answer=fewshot_answer, api_key=KEY, faults=Faults(latency=0.5)) as sim:
        model = "openai/task" if signal_name else "acme/task"
        argv = [sys.executable, "-m", "dspex", "eval", "program.json", "--data", "dev.jsonl", "--metric",
                "task_metric:exact", "--model", model, "--base-url", sim.base_url(), "--workers", "1",
                "--concurrency", "2", "--json"]  # 12 rows, 2 at a time, 0.5 s each: the run outlasts the signal
        env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(workdir / "cache")}
        report = reaped(argv, workdir, env, signal_name, moment, delay)
    assert report["seen"] >= 1, report  # the multiproc runtime did start forking
    if signal_name is None:
        assert report["returncode"] == 2 and "unknown provider 'acme'" in report["stderr"], report
    else:
        assert report["returncode"] == {"SIGINT": 130, "SIGTERM": 143}[signal_name], report
        if report["stdout"]:  # interrupted mid-run: the partial result, as Ctrl-C gives it
            assert json.loads(report["stdout"])["aborted"] == "interrupted", report
        else:  # during start-up: its last word is its one line (a half-started logger, killed, may complain first)
            last = {"SIGINT": "dspex eval: interrupted", "SIGTERM": "dspex eval: terminated"}[signal_name]
            assert report["stderr"].strip().splitlines()[-1] == last, report
    assert report["left"] == {}, report
