"""Shared fixtures: real actor systems on every supported base, and a check for stray processes."""

from __future__ import annotations

import ctypes
import os
import time

import pytest

from supervision import ActorRuntime, procfs

from tests.dspex.subreaper import children, descendants  # the kernel's children lists (stdlib only)

# Our actors' titles, plus the titles Thespian gives its own admin and logger processes.
MARKERS = (b"supervision:", b"dspex:", b"MultiProcAdmin ActorAddr-", b"logger ActorAddr-")

# Which processes are this session's: its descendants, by parentage. This process is a child subreaper, so a
# process it started whose parent exits is re-parented here rather than to init (Thespian's admin is forked
# twice into a session of its own): every process of this session stays a descendant of it, and no test can
# ever find, or kill, a process of another session or program on this machine. (`./run test` also runs the
# suite in a PID namespace of its own, as root: when it ends, nothing it started survives.)
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed: the stray-process check needs Linux")


def _reap_orphans() -> None:
    """Reap the exited processes re-parented here from another session (Thespian's admins and their actors):
    as a subreaper this process is their init. Children of this session (``subprocess`` ones) are left to
    whoever waits for them."""
    mine = os.getsid(0)
    for pid in children(os.getpid()):
        fields = procfs.stat_fields(pid)
        if fields is not None and fields[0] == "Z" and int(fields[3]) != mine:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _candidates() -> list[int]:
    _reap_orphans()
    return sorted(descendants(os.getpid()))


def _titles(prefixes: tuple[bytes, ...]) -> dict[int, str]:
    """This session's live (non-zombie) processes whose title starts with one of ``prefixes``."""
    found: dict[int, str] = {}
    for pid in _candidates():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmd.startswith(prefixes) and not procfs.gone(pid):
            found[pid] = cmd.decode(errors="replace")
    return found


def live_marked_processes() -> dict[int, str]:
    """This session's running actor, admin and watchdog processes (by title, among its own)."""
    return _titles(MARKERS)


def pids_titled(prefix: bytes) -> list[int]:
    """This session's processes whose title (command line) starts with ``prefix``."""
    return list(_titles((prefix,)))


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
