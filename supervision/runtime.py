"""ActorRuntime: the only code that creates a Thespian ActorSystem.

It starts the system on the chosen base, a root supervisor, and (for the process bases) a
watchdog process that stops the tree if the owner dies without closing it. ``close()`` (or leaving
the ``with`` block, Ctrl-C included) stops the tree in reverse start order, shuts the system down
and reaps what Thespian leaves behind.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import structlog
from thespian.actors import ActorSystem, PoisonMessage

from . import _thespian, procfs, tcp
from .cookie import Cookie
from .cookie import resolve as resolve_cookie
from .errors import ActorExited, CallTimeout, Shutdown, SpecError, SupervisionError
from .membership import PROBE_TIMEOUT, NodeInfo, probe
from .messages import (Call, CallError, ChildSpec, Cast, DrainEvents, GetFailures, Init, InitFailed, InitOk,
                       IsAlive, LifecycleEvent, Nudge, Reply, RootFailure, StartTop, StopTree, TerminateChild,
                       WhereIs)
from .pending import LIVENESS_EVERY, PendingCalls
from .ref import ActorRef, SupervisorRef
from .root import RootSupervisor
from .specs import SupervisorSpec, validate_children, walk_classes, walk_names
from .telemetry import EventBus, Subscriber
from .tls import TlsConfig
from .tls import resolve as resolve_tls

log = structlog.get_logger("supervision")

BASES = {"local": "simpleSystemBase", "multiproc": "multiprocTCPBase", "tcp": "multiprocTCPBase"}
LOOPBACK = ("127.0.0.1", "localhost")
SLICE = 0.25  # seconds between liveness checks while a call waits
EVENT_POLL = 0.05
LIVENESS_TIMEOUT = 10.0  # seconds the root has to answer whether an actor a caller waits on is alive
CAST_WAIT = 10.0  # seconds a cast from outside waits for its transmit (a link down for less loses nothing)
PENDING_POLL = 0.005  # seconds between a call_future driver's rounds (timers fired, replies collected)
LOCAL_POLL = 0.002  # local base: how often a waiting caller lets timers fire and checks for its reply


class _Endpoint:
    """One outside mailbox (Thespian's external endpoints are not thread-safe: one user at a time): a private
    one of the system's, so the system's own is never used by a call that Ctrl-C can interrupt half way,
    and is sound for the shutdown."""

    def __init__(self, system: Any, closer: Callable[[], None]) -> None:
        self.system = system
        self.closer = closer


class ActorRuntime:
    """An embedded actor system with a root supervisor. Use as a context manager.

    ``base``: ``"local"`` (simpleSystemBase, in this process, deterministic), ``"multiproc"``
    (multiprocTCPBase on 127.0.0.1, one process per actor, a free admin port per runtime), or
    ``"tcp"`` (the same base on the interface ``bind_host``, the leader of a convention that other
    hosts join with :class:`~supervision.node.Node`; ``convention="ip:port"`` makes it a member of
    another leader's instead). On the process bases every connection proves it holds the cluster
    cookie (``cookie`` / ``cookie_file``, else ``$DSPEX_COOKIE``, else ``~/.dspex/cookie``, made on first
    use; see :mod:`supervision.cookie`) before anything it sends is unpickled; off loopback, only the IP
    addresses in ``peers`` may connect at all. ``actor_ports=(first, last)``: every actor (and outside
    endpoint) listens on a port of that range, not an ephemeral one (for a firewall). ``tls``: a
    :class:`~supervision.tls.TlsConfig` (else ``$DSPEX_TLS_CERT`` / ``_KEY`` / ``_CA``, else none): every
    connection is TLS with certificates your CA signed both ways, the cookie's protocol inside it.
    """

    def __init__(self, base: str = "local", name: str = "app", *, admin_port: int | None = None,
                 bind_host: str = "127.0.0.1", convention: str | None = None,
                 capabilities: dict | None = None, peers: Sequence[str] = (), log_dir: str | None = None,
                 shutdown_timeout: float = 60.0, cookie: Cookie | str | None = None,
                 cookie_file: str | os.PathLike | None = None, actor_ports: tuple[int, int] | str | None = None,
                 tls: TlsConfig | None = None) -> None:
        if base not in BASES:
            raise SpecError("ActorRuntime.base", f"unknown base {base!r}", "use 'local', 'multiproc' or 'tcp'")
        if not isinstance(name, str) or not name or "/" in name:
            raise SpecError("ActorRuntime.name", f"must be a non-empty string without '/', got {name!r}")
        self.base = base
        self.name = name
        self.bind_host = bind_host
        self.convention = convention
        self.admin_port = admin_port
        self.extra_capabilities = dict(capabilities or {})
        if isinstance(peers, str) or not all(isinstance(p, str) and p for p in peers):
            raise SpecError("ActorRuntime.peers", f"must be a list of IP addresses, got {peers!r}")
        self.peers = tuple(peers)
        self.log_dir = log_dir
        self._cookie = (cookie, cookie_file)  # resolved when a process base starts (supervision.cookie)
        self.tls = tls  # resolved when a process base starts (supervision.tls)
        self.actor_ports = None if actor_ports is None else tcp.check_port_range(actor_ports, "ActorRuntime.actor_ports")
        self.shutdown_timeout = shutdown_timeout
        self._system: Any = None
        self._root: Any = None
        self._closed = False
        self._corr = itertools.count(1)
        self._lock = threading.RLock()  # local base: one caller at a time drives the system
        self._cond = threading.Condition(self._lock)
        self._parked: list[Any] = []  # local base: replies that arrived while another thread drove
        self._waiters = 0  # local base: threads waiting for a deferred reply
        self._pool: list[_Endpoint] = []
        self._pool_lock = threading.Lock()
        self._clones: list[_Endpoint] = []
        self._attached = False  # a caller into another process's runtime (see attach): owns nothing
        self._bus = EventBus()
        self.events: list[LifecycleEvent] = []
        self._event_thread: threading.Thread | None = None
        self._stop_events = threading.Event()
        self._watchdog: subprocess.Popen | None = None
        self._log_place: tcp.LogPlace | None = None  # Thespian's log folder (process bases)
        self._root_pid: int | None = None  # the root supervisor's process (process bases)
        self._root_lost: RootFailure | None = None  # set when that process died under us
        self._pending = PendingCalls()  # call_future's calls, settled as their replies come
        self._pending_lock = threading.Lock()
        self._outbox: collections.deque = collections.deque()  # process bases: calls the driver sends
        self._driver: threading.Thread | None = None
        self._next_liveness = 0.0

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self.base == "local"

    def __enter__(self) -> "ActorRuntime":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "ActorRuntime":
        if self._system is not None:
            return self
        _thespian.install()
        if self.is_local:
            self._system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=_thespian.log_defs())
        else:
            self._start_process_system()  # on failure (Ctrl-C included) nothing it forked is left running
        try:  # from here on, whatever stops the start (Ctrl-C too) shuts the system down
            self._root = self._system.createActor(RootSupervisor)
            init = Init((), {"spec": SupervisorSpec(intensity=0), "children": ()}, self.name,
                        f"root {self.name}", None, os.getpid())
            reply = self._request(self._root, init, 30.0)
            if not isinstance(reply, InitOk):
                raise SupervisionError(f"root supervisor did not start: {reply!r}")
            self._root_pid = reply.pid if not self.is_local else None
            if not self.is_local:
                self._watchdog = tcp.start_watchdog(self.admin_port, self.name, self.shutdown_timeout, self._root)
        except BaseException:
            self.close()
            raise
        log.info("runtime_started", runtime=self.name, base=self.base, admin_port=self.admin_port)
        return self

    def _start_process_system(self) -> None:
        peers = self.peers if self.bind_host not in LOOPBACK else ()
        key = resolve_cookie(*self._cookie).key
        tls = resolve_tls(self.tls)
        self._log_place = tcp.place_thespian_log(self.log_dir)
        try:
            self._system, self.admin_port = tcp.start_system(
                self.bind_host, self.admin_port, self.extra_capabilities, convention=self.convention, peers=peers,
                key=key, actor_ports=self.actor_ports, tls=tls)
        except BaseException:
            tcp.release_thespian_log(self._log_place)
            self._log_place = None
            raise

    @classmethod
    def attach(cls, admin_port: int, root: Any, name: str = "attached", *, host: str | None = None,
               cookie_file: str | os.PathLike | None = None, tls: TlsConfig | None = None) -> "ActorRuntime":
        """A caller into a running multiproc/tcp runtime from another process (e.g. inside an actor).

        It owns nothing: ``close`` only drops its endpoints; the owning runtime stops the tree. In an
        actor placed on another host's node it goes through that node's admin (same convention).
        ``host``: the address the admin is bound to (a ``tcp`` runtime's ``bind_host``; this process
        then binds there too). The key is the one this process inherited, else the cookie's; the TLS
        setting ``tls``, else the one inherited, else the environment's.
        """
        _thespian.install()
        tcp.adopt_key(cookie_file, tls)
        if host is not None:
            _thespian.set_base_address(host)
        admin_port = tcp.local_admin_port(admin_port)
        rt = cls("multiproc", name, admin_port=admin_port)
        rt._system = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": admin_port})
        rt._root = root
        rt._attached = True
        return rt

    def close(self) -> None:
        """Stop the tree in order, shut the actor system down, leave no process behind. Idempotent."""
        if self._closed:
            return
        self._closed = True
        system, self._system = self._system, None
        if system is None:
            return
        if self._attached:
            self._close_clones()
            return
        try:
            if self._root is not None and not self._root_gone():
                try:
                    self._request(self._root, Call(next(self._corr), StopTree("shutdown")),
                                  self.shutdown_timeout, system=system)
                except SupervisionError as exc:
                    log.warning("ordered_shutdown_incomplete", runtime=self.name, error=str(exc))
                self._pump_events(system)
        finally:
            self._stop_events.set()
            self._pending.fail(Shutdown(f"runtime {self.name!r} is closed"))
            driver = self._driver
            if driver is not None:
                driver.join(timeout=2.0)
            if self._event_thread is not None:
                self._event_thread.join(timeout=2.0)
            self._close_clones()
            system.shutdown()
            tcp.stop_watchdog(self._watchdog)
            tcp.release_thespian_log(self._log_place)
            if not self.is_local:
                tcp.release_key()
            log.info("runtime_stopped", runtime=self.name)

    def _close_clones(self) -> None:
        for clone in self._clones:
            clone.closer()

    # --- public API ------------------------------------------------------------------------------

    def start_supervisor(self, spec: SupervisorSpec, children: Sequence[ChildSpec] = (), name: str = "top",
                         timeout: float = 60.0) -> SupervisorRef:
        """Start a top-level supervisor and its children (left to right); raises FailedToStartChild."""
        if not isinstance(spec, SupervisorSpec):
            raise SpecError("start_supervisor.spec", f"expected a SupervisorSpec, got {type(spec).__name__}")
        if not isinstance(name, str) or not name or "/" in name:
            raise SpecError("start_supervisor.name", f"must be a non-empty string without '/', got {name!r}")
        children = tuple(children)
        for child in children:
            if not isinstance(child, ChildSpec):
                raise SpecError("start_supervisor.children", f"expected ChildSpec items, got {type(child).__name__}")
        validate_children(spec, children, where="start_supervisor.children")
        top = ChildSpec(id=name, start=spec, children=children, name=name)
        self.check_spec([top])
        info = self.call(self._need_root(), StartTop(spec, children, name), timeout)
        return info.ref.bind(self)

    def stop_supervisor(self, name: str, timeout: float = 60.0) -> None:
        """Stop a top-level supervisor started with ``start_supervisor`` (its tree in order); being a
        temporary child of the root, it is forgotten once stopped."""
        self.call(self._need_root(), TerminateChild(name), timeout)

    def check_spec(self, specs: Sequence[ChildSpec]) -> None:
        """Runtime-dependent checks before anything starts: names free, classes importable by workers."""
        names = walk_names(specs)
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise SpecError("ChildSpec.name", f"name {n!r} used twice in one tree", "names must be unique")
            seen.add(n)
            if self.whereis(n) is not None:
                raise SpecError("ChildSpec.name", f"name {n!r} is already registered", "choose another name")
        if not self.is_local:
            for cid, start in walk_classes(specs):
                if isinstance(start, type) and start.__module__ == "__main__":
                    raise SpecError(f"ChildSpec({cid!r}).start",
                                    f"{start.__qualname__} is defined in __main__, which actor processes cannot import",
                                    "move the class into an importable module")

    def whereis(self, name: str) -> ActorRef | None:
        """The running actor registered under ``name``, or None."""
        found = self.call(self._need_root(), WhereIs(name), 10.0)
        if found is None:
            return None
        return ActorRef(found.address, found.path, found.kind).bind(self)

    def convention_members(self) -> list[str]:
        """``ip:port`` of the nodes that have joined this runtime's convention (process bases only)."""
        if self.is_local:
            return []
        with self._endpoint() as ep:
            return tcp.convention_members(ep.system)

    def nodes(self, timeout: float = PROBE_TIMEOUT) -> list[NodeInfo]:
        """The nodes of this runtime's convention, each asked now whether it is up (``NodeState``); a node
        that does not answer within ``timeout`` seconds is listed as unreachable. Process bases only."""
        if self.is_local:
            return []
        return probe(self._need_system(), timeout)

    @property
    def failures(self) -> list[RootFailure]:
        """Top-level supervisors that exited abnormally (escalations), oldest first; if the root
        supervisor itself died (killed), a failure named ``root`` (its tree is gone with it)."""
        if self._root_gone():
            return [self._root_lost]  # type: ignore[list-item]
        try:
            return self.call(self._need_root(), GetFailures(), 10.0)
        except ActorExited:
            if self._root_gone():
                return [self._root_lost]  # type: ignore[list-item]
            raise

    def _root_gone(self) -> bool:
        """The root's process has died (checked on this node; each actor process dies with its parent)."""
        if self._root_lost is not None:
            return True
        if self._root_pid is None or self._root_pid == os.getpid() or not procfs.gone(self._root_pid):
            return False
        self._root_lost = RootFailure("root", f"the root supervisor's process {self._root_pid} died; every actor "
                                              "under it was stopped with it", time.time())
        log.error("root_lost", runtime=self.name, pid=self._root_pid)
        return True

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(LifecycleEvent)`` for every lifecycle step; returns an unsubscribe function.

        Under ``local`` callbacks run in the caller's thread at the end of each runtime call; under
        the process bases, in a background thread within ~50 ms of the event.
        """
        unsubscribe = self._bus.subscribe(callback)
        if not self.is_local and self._event_thread is None and self._system is not None:
            self._event_thread = threading.Thread(target=self._event_loop, name=f"supervision-events-{self.name}",
                                                  daemon=True)
            self._event_thread.start()
        return unsubscribe

    # --- calls (the Caller protocol of ActorRef) ---------------------------------------------------

    def call(self, address: Any, request: Any, timeout: float = 5.0, *, patience: float = 0.0) -> Any:
        """Send ``request`` to an actor's ``handle_call`` and return its reply (see ActorRef.call).
        ``patience``: seconds the answer may take by design (a long poll): whether the actor still lives is
        not asked (of the root: on a cluster, the leader) before then, only after each ``SLICE`` beyond."""
        reply = self._request(address, Call(next(self._corr), request), timeout, patience=patience)
        if self.is_local and self._bus:
            self._pump_events(self._system)
        if isinstance(reply, CallError):
            raise reply.error
        return reply.value

    def call_future(self, address: Any, request: Any, timeout: float = 5.0) -> concurrent.futures.Future:
        """``call`` with no thread waiting: the future resolves with the reply, or raises what ``call`` would
        (``CallTimeout``, ``ActorExited``, the handler's error). See ``supervision/pending.py``."""
        system = self._need_system()
        corr = next(self._corr)
        future = self._pending.add(corr, time.monotonic(), timeout, address, request)
        if self.is_local:
            with self._cond:
                system.tell(address, Call(corr, request))  # runs the system: the reply may be here already
                self._collect_local(system)
            self._pending.settle()
            if future.done():  # answered already (the actor ran in this thread): no driver needed
                return future
        else:
            self._outbox.append((address, Call(corr, request)))  # sent by the driver, from its own endpoint
        with self._pending_lock:
            if self._driver is None:
                self._driver = threading.Thread(target=self._drive_pending, name=f"supervision-replies-{self.name}",
                                                daemon=True)
                self._driver.start()
        return future

    def _drive_pending(self) -> None:
        """Keep the replies of pending ``call_future`` calls coming (module docstring of ``pending``); ends
        when none is left."""
        private = None
        sending: dict[int, Any] = {}  # corr -> the transmit of a call not answered yet
        try:
            while not self._stop_events.is_set():
                with self._pending_lock:
                    if not len(self._pending) and not self._outbox:
                        self._driver = None
                        return
                system = self._system
                if system is None:
                    return
                if self.is_local:
                    time.sleep(PENDING_POLL)
                    with self._cond:
                        system.tell(self._root, Nudge())  # lets due timers fire (a deferred reply's backoff)
                        self._collect_local(system)
                    self._pending.settle()
                else:
                    if private is None:
                        private = system.private()
                        endpoint = private.__enter__()
                    while self._outbox:
                        address, call = self._outbox.popleft()
                        sending[call.corr] = _thespian.send_from_outside(endpoint, address, call)
                    reply = endpoint.listen(PENDING_POLL)  # also carries the transmits out
                    while reply is not None:
                        if isinstance(reply, PoisonMessage):  # the call reached no live actor
                            corr = getattr(reply.poisonMessage, "corr", None)
                            if corr is not None:
                                self._pending.fail(ActorExited("actor", "it is not running"), corr=corr)
                        else:
                            self._pending.take(reply)
                        reply = endpoint.listen(0)
                    for corr, track in list(sending.items()):
                        if track.failed:  # the call could not be delivered: its actor is gone
                            self._pending.fail(ActorExited("actor", "it is not running"), corr=corr)
                        if track.failed or not self._pending.waiting(corr):
                            del sending[corr]
                    self._pending.settle()
                self._check_pending(system)
        except Exception as exc:  # a bug here must not leave callers waiting forever: they fail with it
            log.error("reply_driver_failed", runtime=self.name, error=repr(exc))
            self._pending.fail(SupervisionError(f"the runtime's reply driver failed: {exc!r}"))
            raise
        finally:
            with self._pending_lock:
                if self._driver is threading.current_thread():
                    self._driver = None
            if private is not None:
                private.__exit__(None, None, None)

    def _check_pending(self, system: Any) -> None:
        now = time.monotonic()
        self._pending.expire(now)
        if now < self._next_liveness:
            return
        self._next_liveness = now + LIVENESS_EVERY
        for address in self._pending.addresses():
            try:
                self._check_alive(address, system, now + LIVENESS_TIMEOUT)
            except ActorExited as exc:
                self._pending.exited(address, exc.reason)

    def cast(self, address: Any, message: Any) -> None:
        system = self._need_system()
        if self.is_local:
            with self._cond:
                system.tell(address, Cast(message))
                if self._waiters or len(self._pending):  # the cast may have released deferred replies for them
                    self._collect_local(system)
            self._pending.settle()
            if self._bus:
                self._pump_events(system)
        else:
            with self._endpoint() as ep:  # not Thespian's tell: it waits up to 60 s on an actor exiting
                _thespian.send_from_outside(ep.system, address, Cast(message), wait=CAST_WAIT)

    def _need_system(self) -> Any:
        if self._system is None:
            raise Shutdown(f"runtime {self.name!r} is closed")
        return self._system

    @property
    def root(self) -> Any:
        """The root supervisor's address (what another process needs to :meth:`attach`)."""
        return self._root

    def _need_root(self) -> Any:
        self._need_system()
        return self._root

    def _request(self, address: Any, msg: Any, timeout: float, system: Any = None, patience: float = 0.0) -> Any:
        """Deliver ``msg`` and wait for the matching reply; raise ActorExited / CallTimeout. Liveness is
        checked after ``patience`` + ``SLICE`` seconds without a reply, then every ``SLICE``."""
        if system is None:
            system = self._need_system()
        corr = getattr(msg, "corr", None)

        def matches(r: Any) -> bool:
            if corr is None:
                return isinstance(r, (InitOk, InitFailed))
            return isinstance(r, (Reply, CallError)) and r.corr == corr

        if self.is_local:
            return self._request_local(system, address, msg, timeout, matches)
        deadline = time.monotonic() + timeout
        with self._endpoint(system) as ep:
            reply = ep.system.ask(address, msg, min(timeout, patience + SLICE))
            while True:
                if reply is not None and matches(reply):
                    return reply
                if reply is None or isinstance(reply, PoisonMessage):
                    self._check_alive(address, system, deadline)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CallTimeout(str(address), getattr(msg, "request", msg), timeout)
                reply = ep.system.listen(min(remaining, SLICE))

    def _check_alive(self, address: Any, system: Any, deadline: float) -> None:
        """``_raise_if_dead`` for a call waiting until ``deadline``, asked within it (a ``call`` and the
        ``call_future`` driver both ask this way). A liveness question that goes unanswered (the root busy,
        the link to the leader down for a few seconds) is no verdict: the call goes on waiting for its own
        reply (a ``call`` raised the question's CallTimeout, naming IsAlive, and a host's worker crashed on
        a link down for 4 s); only ``ActorExited`` is."""
        try:
            self._raise_if_dead(address, system, max(0.1, min(LIVENESS_TIMEOUT, deadline - time.monotonic())))
        except ActorExited:
            raise
        except SupervisionError as exc:  # asked again at the next check
            log.warning("liveness_unknown", runtime=self.name, actor=str(address), error=str(exc))

    def _request_local(self, system: Any, address: Any, msg: Any, timeout: float,
                       matches: Callable[[Any], bool]) -> Any:
        """Local base: whoever holds the lock drives the system; replies for other threads are parked.

        A caller waiting for a deferred reply releases the lock between polls, so other threads can
        send the messages (or let the timers fall due) that produce it.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            system.tell(address, msg)  # runs the system until it is idle
            while True:
                reply = self._collect_local(system, matches)
                if reply is None:
                    reply = next((r for r in self._parked if matches(r)), None)
                    if reply is not None:
                        self._parked.remove(reply)
                if reply is not None:
                    return reply
                self._raise_if_dead(address, system)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CallTimeout(str(address), getattr(msg, "request", msg), timeout)
                self._waiters += 1
                try:
                    self._cond.wait(min(remaining, LOCAL_POLL))
                finally:
                    self._waiters -= 1
                system.tell(self._root or address, Nudge())  # fires the timers now due and runs what they send

    def _collect_local(self, system: Any, matches: Callable[[Any], bool] | None = None) -> Any:
        """Take the replies waiting at the outside mailbox: return the one ``matches`` accepts, park the
        others for their threads (and wake them)."""
        found, parked = None, False
        reply = system.listen(0)
        while reply is not None:
            if found is None and matches is not None and matches(reply):
                found = reply
            elif self._pending.take(reply):
                pass  # a call_future's reply: its future is settled outside the lock (_pending.settle)
            elif not isinstance(reply, PoisonMessage):
                self._parked.append(reply)
                parked = True
            if found is not None and not self._waiters and not len(self._pending):
                break  # nobody else waits: skip the extra scheduler pass
            reply = system.listen(0)
        if parked:
            self._cond.notify_all()
        return found

    def _raise_if_dead(self, address: Any, system: Any, timeout: float | None = None) -> None:
        if self._root is not None and self._root_gone():
            raise ActorExited(str(address), self._root_lost.reason if self._root_lost else "root gone")
        if self._root is None or address == self._root:
            return
        question = Call(next(self._corr), IsAlive(address))
        reason = self._request(self._root, question, timeout or LIVENESS_TIMEOUT, system=system).value
        if reason is not None:
            raise ActorExited(str(address), reason)

    @contextmanager
    def _endpoint(self, system: Any = None) -> Iterator[_Endpoint]:
        """Borrow an outside mailbox; clones are made on demand for concurrent threads."""
        with self._pool_lock:
            ep = self._pool.pop() if self._pool else None
        if ep is None:
            base = system or self._need_system()
            cm = base.private()
            ep = _Endpoint(cm.__enter__(), lambda cm=cm: cm.__exit__(None, None, None))
            self._clones.append(ep)
        try:
            yield ep
        except Exception:
            self._give_back(ep)
            raise
        except BaseException:  # Ctrl-C inside Thespian's transport: its state is unknown, a later call could hang
            self._discard(ep)
            raise
        self._give_back(ep)

    def _give_back(self, ep: _Endpoint) -> None:
        with self._pool_lock:
            self._pool.append(ep)

    def _discard(self, ep: _Endpoint) -> None:
        """An endpoint interrupted mid-operation is closed, not used again: the next caller gets a fresh one."""
        with self._pool_lock:
            if ep in self._clones:
                self._clones.remove(ep)
        try:
            ep.closer()
        except Exception as exc:  # noqa: BLE001 - the interrupt is what the caller must see; this is logged
            log.warning("endpoint_not_closed", runtime=self.name, error=repr(exc))

    # --- events ------------------------------------------------------------------------------------

    def _pump_events(self, system: Any) -> None:
        try:
            reply = self._request(self._root, Call(next(self._corr), DrainEvents()), 10.0, system=system)
        except SupervisionError as exc:
            log.warning("event_drain_failed", runtime=self.name, error=str(exc))
            return
        for event in reply.value:
            self.events.append(event)
            self._bus.publish(event)
        del self.events[:-10_000]

    def _event_loop(self) -> None:
        while not self._stop_events.wait(EVENT_POLL):
            system = self._system
            if system is None:
                return
            self._pump_events(system)
