"""Reading /proc (Linux): a process's state, parent, session and CPU, and a process's children.

Used to reap the fork Thespian leaves behind, and by the tests to find stray processes.
"""

from __future__ import annotations

import functools
import os


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def cpu_seconds(fields: list[str]) -> float:
    """User + system CPU seconds of a process, from its :func:`stat_fields`."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@functools.cache
def node_id() -> str:
    """Where a pid means something: this boot of this machine and this pid namespace. Two processes
    with the same node id can signal each other by pid; across nodes (other hosts) they cannot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"unknown-{os.getpid()}"


def gone(pid: int) -> bool:
    """True if process ``pid`` has exited: no longer listed, or a zombie waiting to be reaped."""
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children_of(parent: int) -> set[int]:
    found = set()
    for pid in pids():
        fields = stat_fields(pid)
        if fields is not None and int(fields[1]) == parent:
            found.add(pid)
    return found
