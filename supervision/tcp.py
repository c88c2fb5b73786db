"""Starting a multiprocTCPBase actor system safely, and the watchdog that outlives its owner.

Used by :class:`~supervision.ActorRuntime` (a tree's own system) and :class:`~supervision.node.Node`
(a host's system joined to a leader's convention). Every socket binds to ``bind_host`` (127.0.0.1
unless a multi-host run names an interface), accepts connections only from ``peers``, and
authenticates each one with the cluster key (:mod:`supervision.channel`): Thespian unpickles whatever
arrives, so only holders of the cookie may get a byte to it.
"""

from __future__ import annotations

import os
import pickle
import socket
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from thespian.actors import ActorSystem, ActorSystemException

from . import _thespian, channel, procfs
from .cookie import resolve as resolve_cookie
from .errors import SpecError, SupervisionError
from .tls import TlsConfig
from .tls import resolve as resolve_tls
from .tls import to_args as tls_args


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


PICKED_PORT_ATTEMPTS = 3  # admin ports start_system picks itself before it gives up
NODE_ENV = "SUPERVISION_NODE_ADMIN"  # set for a node's actor processes: their local admin, "ip:port"
OWNED_LOG_ENV = "SUPERVISION_THESPLOG_FILE"  # the THESPLOG_FILE a runtime set (told apart from the user's)


def check_address(value: str, what: str) -> tuple[str, int]:
    """``"host:port"`` → (host, port), or SpecError saying what is wrong."""
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(what, f"{value!r} is not an address", "write it as 'ip:port', e.g. '10.0.0.5:1900'")
    return host, int(port)


def check_port_range(value: Any, what: str) -> tuple[int, int]:
    """``(first, last)`` or ``"first-last"`` → (first, last), or SpecError saying how to write it."""
    try:
        if isinstance(value, str):
            return _thespian.parse_port_range(value, what)
        first, last = (int(v) for v in value)
        return _thespian.parse_port_range(f"{first}-{last}", what)
    except (TypeError, ValueError) as exc:
        raise SpecError(what, f"{value!r} is not a port range", "give (first, last) or 'first-last', e.g. "
                        "'20000-20999'") from exc


def local_admin_port(default: int) -> int:
    """The admin port an outside caller in this process must attach through: the node's own when this
    process is an actor placed on a node, else ``default`` (the runtime's)."""
    address = os.environ.get(NODE_ENV)
    return check_address(address, NODE_ENV)[1] if address else default


@dataclass(frozen=True)
class LogPlace:
    """Where Thespian's own log goes for one system: ``owned`` folders are removed when it closes."""

    folder: str
    owned: bool
    previous: str | None  # THESPLOG_FILE before this system set it


def place_thespian_log(log_dir: str | None) -> LogPlace:
    """Thespian's log file: in ``log_dir``, else in a fresh private folder (``mkdtemp``: mode 0700, made
    exclusively, so nothing pre-created can be followed). A ``THESPLOG_FILE`` the user set is kept."""
    previous = os.environ.get("THESPLOG_FILE")
    if previous and os.environ.get(OWNED_LOG_ENV) != previous:  # the user's own choice
        return LogPlace(os.path.dirname(previous), False, previous)
    owned = log_dir is None
    folder = tempfile.mkdtemp(prefix=f"supervision-{os.getpid()}-") if owned else log_dir
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.environ["THESPLOG_FILE"] = os.environ[OWNED_LOG_ENV] = os.path.join(folder, "thespian.log")
    os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")
    return LogPlace(folder, owned, previous)


def release_thespian_log(place: LogPlace | None) -> None:
    """After the system is shut down: put THESPLOG_FILE back as it was and remove an owned folder."""
    if place is None:
        return
    if os.environ.get(OWNED_LOG_ENV) == os.path.join(place.folder, "thespian.log"):  # still ours
        if place.previous is None:
            os.environ.pop("THESPLOG_FILE", None)
            os.environ.pop(OWNED_LOG_ENV, None)
        else:  # an outer runtime's (we only ever replace our own)
            os.environ["THESPLOG_FILE"] = os.environ[OWNED_LOG_ENV] = place.previous
    if place.owned:
        shutil.rmtree(place.folder, ignore_errors=True)  # our own temporary folder; nothing else is in it


def start_system(bind_host: str, admin_port: int | None, capabilities: dict, *, key: bytes,
                 convention: str | None = None, peers: Sequence[str] = (),
                 actor_ports: tuple[int, int] | None = None, tls: TlsConfig | None = None) -> tuple[Any, int]:
    """Start (or join) the multiprocTCPBase system on ``bind_host:admin_port`` (a free port if None);
    returns the system and its admin port. Actor processes forked from it inherit the bind address,
    the peer list, the log place and the range of ``actor_ports`` (if given) through the environment set
    here, and the cluster ``key`` (held until :func:`release_key`) and ``tls`` setting in memory."""
    if actor_ports is not None:
        os.environ[_thespian.PORTS_ENV] = "%d-%d" % check_port_range(actor_ports, "actor_ports")
    channel.use_key(key, tls)
    try:
        return _start_system(bind_host, admin_port, capabilities, convention, peers)
    except BaseException:
        channel.release_key()
        raise


def release_key() -> None:
    """The system started with :func:`start_system` is shut down: its hold on the cluster key ends."""
    channel.release_key()


def adopt_key(cookie_file: str | os.PathLike | None = None, tls: TlsConfig | None = None) -> None:
    """Before talking to a running system from a process that did not start it: the cookie in
    ``cookie_file`` if given, else the key this process inherited (an actor process), else the default
    cookie's (module :mod:`supervision.cookie`); the same for ``tls`` (else the environment's)."""
    if cookie_file is not None or channel.current_key() is None:
        channel.inherit_key(resolve_cookie(cookie_file=cookie_file).key)
    if tls is not None or channel.current_tls() is None:
        channel.inherit_tls(resolve_tls(tls))


def _start_system(bind_host: str, admin_port: int | None, capabilities: dict, convention: str | None,
                  peers: Sequence[str]) -> tuple[Any, int]:
    _thespian.install()
    _thespian.set_base_address(bind_host)
    os.environ[_thespian.PEERS_ENV] = ",".join(peers)
    if convention:
        check_address(convention, "convention")
    # a port we picked was free when we looked; something else may take it before the admin binds it (an
    # outgoing connection's ephemeral port): then another port, a few times. A port the caller named is tried once.
    attempts = 1 if admin_port else PICKED_PORT_ATTEMPTS
    for attempt in range(attempts):
        port = admin_port or free_port(bind_host)
        caps = {"Admin Port": port, **capabilities}
        if convention:
            caps["Convention Address.IPv4"] = convention
        before, reaped = procfs.children_of(os.getpid()), set()
        try:
            system = ActorSystem("multiprocTCPBase", capabilities=caps, transientUnique=True,
                                 logDefs=_thespian.log_defs())
            reap_new_zombies(before, reaped)
            return system, port
        except BaseException as exc:  # Ctrl-C included: the admin forked so far must not outlive this failure
            stop_forked_admin(before, reaped)
            if not isinstance(exc, ActorSystemException):
                raise
            if attempt + 1 == attempts:
                raise SupervisionError(f"the actor system did not start on {bind_host}:{port} "
                                       f"({type(exc).__name__}: {exc}); check that {bind_host} is up and reachable "
                                       "(for 127.0.0.1: the loopback interface, `ip link set lo up`)") from exc
    raise AssertionError("unreachable")  # the loop returns or raises


def stop_forked_admin(before: set[int], reaped: set[int], wait: float = 5.0) -> None:
    """After a start that failed or was interrupted: kill what Thespian forked for it, found by parentage
    (never by name). Thespian's starter is a fork of this process (the same command line) that calls
    ``setsid``, forks the admin and exits, so the admin, its logger and any actor they forked are the
    processes of the session whose id is the starter's pid: a child of ours new since ``before``, or one
    :func:`reap_new_zombies` already reaped (``reaped``). Other children of this process are left alone."""
    me = os.getpid()
    mine = _cmdline(me)
    deadline = time.monotonic() + wait
    for pid in (procfs.children_of(me) - before) | reaped:
        if pid not in reaped and _cmdline(pid) != mine and not (procfs.gone(pid) and _session(pid)):
            continue  # not a fork of ours on its way to being the admin (a subprocess another thread started)
        while pid not in reaped and not procfs.gone(pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # let it finish forking the admin (it exits right after)
        leader = pid not in reaped and not procfs.gone(pid) and _session_of(pid) == pid  # setsid, not yet forked
        doomed = _session(pid) | ({pid} if leader else set())
        while doomed:  # again until none is left: one may have been forking its logger as it was killed
            for member in doomed:
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
            doomed = _session(pid) if time.monotonic() < deadline else set()
        if pid not in reaped and (leader or procfs.gone(pid)):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _session_of(pid: int) -> int | None:
    fields = procfs.stat_fields(pid)
    return int(fields[3]) if fields is not None else None


def _session(sid: int) -> set[int]:
    """The live processes of session ``sid`` (not ``sid`` itself)."""
    found = set()
    for pid in procfs.pids():
        fields = procfs.stat_fields(pid)
        if pid != sid and fields is not None and int(fields[3]) == sid and not procfs.gone(pid):
            found.add(pid)
    return found


def start_watchdog(admin_port: int, name: str, timeout: float, root: Any = None) -> subprocess.Popen:
    """``python -m supervision.watchdog``: stops the tree under ``root`` (if any) and the system when
    this process dies without saying ``bye`` (see :func:`stop_watchdog`)."""
    cmd = [sys.executable, "-m", "supervision.watchdog", "--port", str(admin_port), "--name", name,
           "--timeout", str(timeout), *tls_args(channel.current_tls())]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    watchdog = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True, env=env)
    first = pickle.dumps(root).hex().encode() if root is not None else b"-"
    key = channel.current_key() or b""
    watchdog.stdin.write(key.hex().encode() + b"\n" + first + b"\n")  # a private pipe: never argv or env
    watchdog.stdin.flush()
    return watchdog


def stop_watchdog(watchdog: subprocess.Popen | None) -> None:
    """Tell the watchdog its owner closed the system itself, and wait for it."""
    if watchdog is None:
        return
    try:
        watchdog.stdin.write(b"bye\n")
        watchdog.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    try:
        watchdog.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def convention_members(system: Any, timeout: float = 10.0) -> list[str]:
    """``ip:port`` of the admins that have joined this system's convention (the leader asks its own)."""
    from thespian.system.messages.status import Thespian_StatusReq

    from .membership import address_text

    status = system.ask(system._systemBase.adminAddr, Thespian_StatusReq(), timeout)
    return [address_text(address) for address, _valid in getattr(status, "conventionAttendees", None) or []]


def reap_new_zombies(before: set[int], reaped: set[int] | None = None) -> None:
    """Reap the intermediate fork Thespian leaves as our zombie (only children that are new); their pids
    are added to ``reaped`` (the admin's session id, should the start be undone)."""
    deadline = time.monotonic() + 2.0
    mine = _cmdline(os.getpid())
    while True:
        # only forks of this process (its command line, or already exited): where this process is a
        # subreaper or a container's pid 1, the admin itself is re-parented here and must not be waited for
        new = {pid for pid in procfs.children_of(os.getpid()) - before
               if procfs.gone(pid) or _cmdline(pid) == mine}
        pending = []
        for pid in new:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                pending.append(pid)
            elif reaped is not None:
                reaped.add(pid)
        if not pending or time.monotonic() > deadline:
            return
        time.sleep(0.02)
