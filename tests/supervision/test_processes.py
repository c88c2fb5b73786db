"""Behaviour only the process bases have: kill -9, process titles, owner death, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from supervision import ActorRuntime, ChildSpec, SupervisionError, SupervisorSpec, procfs
from tests.conftest import live_marked_processes, wait_until
from tests.supervision.actors import Counter, SlowStop

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["multiproc", "tcp"])
def prt(request):
    with ActorRuntime(base=request.param, name="p") as runtime:
        yield runtime


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode().strip()


def test_kill_9_is_a_crash(prt):
    events = []
    prt.subscribe(events.append)
    sup = prt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="c", start=Counter)])
    old = sup.child("c")
    pid = old.call("pid")
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: (r := sup.child("c")) is not None and r != old, 10.0)
    assert sup.child("c").call("pid") != pid
    assert wait_until(lambda: any(e.kind == "exit" and e.reason == "killed" and not e.normal for e in events))


def test_children_killed_together_are_all_restarted(prt):
    """Thespian may merge the SIGCHLDs of deaths close together into one exit notice; the supervisor's
    liveness check restarts every dead child anyway (repeated: the race does not show every time)."""
    sup = prt.start_supervisor(SupervisorSpec(intensity=100, period=10.0),
                               [ChildSpec(id=f"c{i}", start=Counter) for i in range(4)])
    for _ in range(5):
        pids = [sup.child(f"c{i}").call("pid") for i in range(4)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

        def all_new():
            try:
                return all(sup.child(f"c{i}").call("pid", 2.0) not in pids for i in range(4))
            except SupervisionError:
                return False

        assert wait_until(all_new, timeout=5.0, interval=0.1)


def test_process_titles_show_the_tree(prt):
    inner = ChildSpec(id="inner", start=SupervisorSpec(), children=[ChildSpec(id="c", start=Counter)])
    sup = prt.start_supervisor(SupervisorSpec(), [inner], name="top")
    pid = sup.child("inner").child("c").call("pid")
    assert cmdline(pid) == "supervision: p/top/inner/c"
    titles = set(live_marked_processes().values())
    assert "supervision: p/top" in titles and "supervision: p/top/inner" in titles and "supervision: root p" in titles
    assert f"MultiProcAdmin ActorAddr-(T|:{prt.admin_port})" in titles  # Thespian titles its admin itself
    assert wait_until(lambda: "supervision: watchdog p" in set(live_marked_processes().values()))


def test_shutdown_timeout_kills_slow_terminate(prt):
    sup = prt.start_supervisor(SupervisorSpec(), [ChildSpec(id="s", start=SlowStop, shutdown=0.5)])
    pid = sup.child("s").call("pid")
    t0 = time.monotonic()
    sup.terminate_child("s")
    assert 0.5 <= time.monotonic() - t0 < 8.0
    assert wait_until(lambda: procfs.gone(pid))  # gone or zombie


def test_actor_sockets_bind_loopback_only(prt):
    sup = prt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
    pid = sup.child("c").call("pid")
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss not available")
    mine = [line for line in out.stdout.splitlines() if f"pid={pid}," in line]
    assert mine and all("127.0.0.1:" in line.split()[3] for line in mine)


def _session(pid: int) -> int | None:
    fields = procfs.stat_fields(pid)
    return None if fields is None else int(fields[3])


def _admin_sessions() -> set:
    """Session ids of Thespian admins: each admin's session holds all its actors (and logger)."""
    return {_session(p) for p, c in live_marked_processes().items() if c.startswith("MultiProcAdmin ActorAddr-")}


def _mine(name: str, sessions: set) -> dict:
    """The owner's tree: everything in its admin's session, and its watchdog."""
    return {p: c for p, c in live_marked_processes().items()
            if _session(p) in sessions or c == f"supervision: watchdog {name}"}


@contextmanager
def owner(name: str, log: Path) -> Iterator[tuple[subprocess.Popen, set]]:
    """A process owning a multiproc runtime with workers a, b, c; yields it and its admin's session."""
    before = _admin_sessions()
    proc = subprocess.Popen([sys.executable, "-m", "tests.supervision.owner_script", name, str(log)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # structlog lines come first
            line = proc.stdout.readline()
            if line.startswith("ready") or not line:
                break
        assert line.startswith("ready"), line
        yield proc, _admin_sessions() - before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_owner_killed_leaves_no_daemons(tmp_path):
    log = tmp_path / "t.log"
    with owner("orphan", log) as (proc, sessions):
        assert len(sessions) == 1
        # admin, logger, root, top, 3 workers, watchdog
        assert wait_until(lambda: len(_mine("orphan", sessions)) == 8), _mine("orphan", sessions)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert wait_until(lambda: not _mine("orphan", sessions), 20.0), _mine("orphan", sessions)
        assert log.read_text().splitlines() == ["c:shutdown", "b:shutdown", "a:shutdown"]


@pytest.mark.slow
def test_sigint_stops_tree_in_order(tmp_path):
    log = tmp_path / "t.log"
    with owner("intr", log) as (proc, sessions):
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        assert log.read_text().splitlines() == ["c:shutdown", "b:shutdown", "a:shutdown"]
        assert wait_until(lambda: not _mine("intr", sessions), 10.0), _mine("intr", sessions)


def test_kill_9_of_the_root_takes_its_whole_tree_and_the_owner_learns_of_it():
    """Each actor process dies with its parent (OTP's supervisor link), so after kill -9 of the root
    nothing of the tree lives on; rt.failures names the root, and close() is prompt."""
    with ActorRuntime(base="multiproc", name="rootkill") as rt:
        rt.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec(id="a", start=Counter),
                                                          ChildSpec(id="b", start=Counter)], name="top")
        tree = {p: c for p, c in live_marked_processes().items() if "rootkill" in c}
        root = [p for p, c in tree.items() if c.startswith("supervision: root rootkill")]
        assert len(root) == 1 and len(tree) >= 4  # root, top, a, b
        os.kill(root[0], signal.SIGKILL)
        assert wait_until(lambda: not [p for p, c in live_marked_processes().items() if "rootkill" in c  # the tree
                                       and not c.startswith(("MultiProcAdmin", "logger", "supervision: watchdog"))],
                          timeout=5.0)
        failures = rt.failures
        assert [f.name for f in failures] == ["root"] and "died" in failures[0].reason
        start = time.monotonic()
    assert time.monotonic() - start < 15.0


def test_malformed_frames_from_loopback_are_dropped_and_the_tree_lives_on(prt):
    import socket

    sup = prt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)], name="top")
    child = sup.child("c")
    for target in (prt.root, child.address):
        host, port = target.addressDetails.sockname[:2]
        for junk in (b"not-a-size>payload", b"-5>abc", b"99999999999999>x", b"12>" + b"\x80" * 12, b"x" * 100):
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(junk)
                time.sleep(0.05)
    assert child.call("incr", timeout=5.0) == 1
    assert prt.failures == []
    assert [c.id for c in sup.which_children()] == ["c"]


def test_a_call_interrupted_by_ctrl_c_leaves_the_next_call_working():
    """Ctrl-C lands anywhere in a call, Thespian's transport included: the outside mailbox it was using is
    not used again (a later call through it went unanswered: a CLI interrupted while starting its pool
    could not stop it, and its next call timed out after 60 s)."""
    import random
    import threading

    random.seed(5)
    with ActorRuntime(base="multiproc", name="intr") as rt:
        child = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)], name="top").child("c")
        unanswered = []
        for trial in range(30):
            timer = threading.Timer(random.uniform(0.0005, 0.004), signal.raise_signal, args=(signal.SIGINT,))
            deadline = time.monotonic() + 5
            try:
                timer.start()
                while time.monotonic() < deadline:
                    child.call("incr")
            except KeyboardInterrupt:
                pass
            timer.join()
            try:
                child.call("incr", timeout=3)
            except SupervisionError as exc:
                unanswered.append((trial, str(exc)))
        assert unanswered == []
        assert rt.failures == []
