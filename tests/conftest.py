"""Shared fixtures: real actor systems on every supported base, and a check for stray processes."""

from __future__ import annotations

import os
import time

import pytest

from supervision import ActorRuntime, procfs

# Our actors' titles, plus the titles Thespian gives its own admin and logger processes.
MARKERS = (b"supervision:", b"dspex:", b"MultiProcAdmin ActorAddr-", b"logger ActorAddr-")


def live_marked_processes() -> dict[int, str]:
    """Running (non-zombie) processes whose title carries our marker: found by title, not parent."""
    found: dict[int, str] = {}
    for pid in procfs.pids():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmd.startswith(MARKERS) and not procfs.gone(pid):
            found[pid] = cmd.decode(errors="replace")
    return found


def pids_titled(prefix: bytes) -> list[int]:
    """Processes whose title (command line) starts with ``prefix``."""
    found = []
    for pid in procfs.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().startswith(prefix):
                    found.append(pid)
        except OSError:
            continue
    return found


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``predicate`` until truthy (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture(autouse=True)
def no_stray_processes():
    """Every test must leave no actor, admin or watchdog process behind."""
    before = set(live_marked_processes())
    yield
    left = wait_until(lambda: not (set(live_marked_processes()) - before), timeout=10.0)
    if not left:
        stray = {p: c for p, c in live_marked_processes().items() if p not in before}
        for pid in stray:  # clean up so one failure does not cascade, then fail loudly
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        pytest.fail(f"stray processes left behind: {stray}")


@pytest.fixture(params=["local", "multiproc"])
def base(request) -> str:
    return request.param


@pytest.fixture
def rt(base):
    with ActorRuntime(base=base, name="t") as runtime:
        yield runtime
