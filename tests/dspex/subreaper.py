"""Run a command as a child subreaper and report which of its descendants outlived it (by parentage only).

    python tests/dspex/subreaper.py '{"argv": [...], "cwd": ..., "env": {...}, "signal": "SIGINT",
                                      "moment": "admin" | "start", "delay": 0.3, "grace": 15}'

This process marks itself PR_SET_CHILD_SUBREAPER, so every process the command forks, however deep and
however detached (Thespian's admin is a double fork in a new session), is re-parented here when its own
parent exits, instead of to init. ``moment: "admin"``: the signal goes ``delay`` seconds after the
first such re-parented process appears (the actor system's admin, forked while ``ActorSystem()`` still
waits for it); ``"start"``: ``delay`` seconds after the command starts. After the command exits, its
leftovers are this process's children: it waits up to ``grace`` seconds for them to end, prints one
JSON line (exit code, output, pids left alive with their command lines, descendants seen) and kills
what is left, by pid. Linux only; only the standard library (it must not import what it tests).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.update(int(p) for p in fh.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    me = os.getpid()
    # stderr to a file, not a pipe: a leftover holding a pipe open would make reading it wait for the leftover
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen(spec["argv"], cwd=spec.get("cwd"), env=spec.get("env"), stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL)
    started, fire_at, sent, seen = time.monotonic(), None, None, set()
    wanted = getattr(signal, spec["signal"]) if spec.get("signal") else None
    if wanted is not None and spec["moment"] == "start":
        fire_at = started + spec["delay"]
    while proc.poll() is None:
        adopted = children(me) - {proc.pid}
        seen |= descendants(proc.pid) | adopted
        if wanted is not None and fire_at is None and adopted:  # the admin was forked and re-parented here
            fire_at = time.monotonic() + spec["delay"]
        if wanted is not None and sent is None and fire_at is not None and time.monotonic() >= fire_at:
            proc.send_signal(wanted)
            sent = round(time.monotonic() - started, 3)
        if time.monotonic() - started > spec.get("timeout", 120):
            proc.kill()
        time.sleep(0.002)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    deadline = time.monotonic() + spec.get("grace", 15)
    while True:
        reap()
        left = sorted(p for p in children(me) if alive(p))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(json.dumps({"returncode": proc.returncode, "signal_at": sent, "seen": len(seen),
                      "left": {p: cmdline(p) for p in left}, "stdout": stdout[-1500:], "stderr": stderr[-1500:]}),
          flush=True)
    for pid in left:  # found by parentage: they are ours
        for gone in descendants(pid) | {pid}:
            try:
                os.kill(gone, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.1)
    reap()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
