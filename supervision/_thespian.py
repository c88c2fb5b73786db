"""The one place that adapts Thespian: the patches below and two helpers that reach into it.

1. Bind actors to one interface, not 0.0.0.0. Thespian binds its admin and every actor on all
   interfaces. With ``SUPERVISION_BIND_HOST`` set (the runtime sets it to 127.0.0.1 unless told
   otherwise), every socket binds to that address instead. Forked processes inherit the environment.
2. Authenticate every connection (:mod:`supervision.channel`). Thespian unpickles whatever arrives
   and a pickle is code, so every socket it opens or accepts is a :class:`~supervision.channel.SecureSocket`:
   a challenge-response over the cluster cookie when the connection opens, then HMAC-checked records,
   so nothing from a peer without the cookie reaches the unpickler. The transport selects a client
   socket for reading while its handshake waits on the server, and keeps reading a connection that has
   delivered part of a record without Thespian's growing back-off.
3. Accept connections only from listed peers. With ``SUPERVISION_ALLOWED_PEERS`` set (a comma
   separated list of IP addresses; the runtime always sets it for the process bases), a connection
   from any other address is closed as soon as it is accepted, before a byte of it is read.
   Loopback and the bound address are always allowed (the cookie is what keeps local users out).
4. Survive malformed frames. Thespian's frame reader raises on a size prefix that is not a number
   and that exception kills the whole transport; a bad, negative or absurd size now marks the frame
   corrupt, which Thespian already handles by dropping that one connection. A frame that unpickles to
   anything but ``(sender address, message)`` or an acknowledgement is dropped the same way (a frame
   whose sender was not an address made the admin, and with it the whole system, exit).
5. Convention membership changes only by the member itself: a register or de-register whose admin
   address is not its sender's is ignored (a spoofed de-register evicted a live host).
6. A member that cannot reach its leader tries again within seconds (1, 2, then 4 s), not after
   Thespian's 7 minutes 22 seconds; its admin looks at the clock at least every second until it has
   joined (its loop otherwise sleeps for the whole period); and the third miss in a row, which Thespian
   answers by forgetting a leader it never met and waiting the whole period again, is followed by the
   next attempt at once: a host started before its leader joins once the leader is up.
7. Actor ports from a configured range. Thespian gives every actor (and every outside endpoint) an
   ephemeral port, so a firewall would have to open them all; with ``SUPERVISION_ACTOR_PORTS`` set
   (``"20000-20999"``; the runtime and nodes set it from ``actor_ports``) each listening socket that would
   take an ephemeral port takes a free one of the range instead (admin ports are fixed already).
8. simpleSystemBase looks for expired timers before every message it delivers, through a fold of
   lambdas that cost ~15 µs per pending timer (Thespian cannot cancel timers, so supervisors' start
   timeouts stay pending for a minute): the same partition in one plain pass.
9. Messages are not turned into text to be logged. Thespian describes every message it receives and
   every send it attempts (``identify()``: ``str`` of the whole message, then cut to 500 characters) as
   the argument of a debug log call that is off, several times a message: an evaluation's rows and
   examples were rendered to text on every hop (a tenth of the coordinator's time). The description
   now names the message's type only (so no message's contents reach Thespian's logs either).
10. The transport's loop makes a new selector on every turn and registers every socket in it. The default
    selector is epoll: a kernel object created, one system call per socket, then closed, each turn (a
    quarter of a busy coordinator's time with 32 hosts connected). It is ``poll`` instead, one system call
    a turn, and a lean one (:class:`LeanPollSelector`): ``selectors``' bookkeeping (a key object per socket,
    looked up again for each ready one) cost several µs a socket a turn, which a leader with many hosts
    connected pays on every turn of its loop.
11. An actor process's loop runs at the start of a fresh frame stack chunk. CPython (3.11 on) keeps Python
    frames in 16 KiB chunks, allocating a chunk (mmap) when a call does not fit in the current one and
    freeing it (munmap) when that call returns. A Thespian child is forked from deep in its parent's stack
    (three forks down for a host pool's coordinator), so where its loop sits in a chunk is an accident; when
    a chunk ends inside the loop's calls, every message costs hundreds of mmap/munmap pairs (measured: 5,700
    a second, half a busy coordinator's CPU, in some runs and not others). The loop is now entered through
    a function whose own frame fills 32 KiB, so it gets a 64 KiB chunk of its own, and the loop and its
    handlers run in the ~32 KiB behind it.

12. A time not yet up is never read as "no time left". A timer's ``remaining()`` is a ``timedelta``, which
    rounds to whole microseconds: less than half of one left read as ``timedelta(0)``, and the transport's
    loop, which drops every false delay before taking the shortest (``filter(None, delays)``), then waited
    in its poll with no timeout while the next timer (a deferred reply's, a supervisor's) was due within
    the microsecond: it fired only when some message woke the process. ``remaining()`` of a timer not yet
    expired is now at least a microsecond.

Besides ``forget_child``, ``tell_self`` lets a helper thread of an actor put a message in that actor's
own mailbox (Thespian's ``send`` belongs to the actor's thread), and ``send_from_outside`` sends from an
outside endpoint without waiting for the transmit to finish (Thespian's ``tell`` waits up to a minute when
the target is exiting as the connection opens).
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import pickle
import random
import select
import selectors
import socket
import types
from datetime import timedelta
from typing import Any

import structlog
from thespian.actors import ActorAddress
from thespian.system import actorManager, simpleSystemBase
from thespian.system.admin import convention
from thespian.system.transport import IPBase, ReceiveEnvelope, TCPTransport, TransmitIntent, streamBuffer
from thespian.system.timing import ExpirationTimer, ExpirationTimerView
from thespian.system.utilis import thesplog

from . import channel

BIND_ENV = "SUPERVISION_BIND_HOST"
PORTS_ENV = "SUPERVISION_ACTOR_PORTS"
PEERS_ENV = "SUPERVISION_ALLOWED_PEERS"
_original_init = IPBase.IPActorAddress.__init__
_original_add_more = streamBuffer.ReceiveBuffer.addMore
_original_new_socket = TCPTransport.TCPTransport.new_socket
_original_register = convention.ConventioneerAdmin.h_ConventionRegister
_original_deregister = convention.ConventioneerAdmin.h_ConventionDeRegister
_original_registration_failed = convention.LocalConventionState._setupConventionCBError
_original_inattention = convention.LocalConventionState.convention_inattention_delay
_original_member_checks = convention.LocalConventionState._convention_member_checks
_original_actor_run = actorManager.ActorManager.run
_original_admin_run = convention.ConventioneerAdmin.run
FRESH_CHUNK_SLOTS = 4100  # frame slots (8 bytes each) of the function that enters an actor's loop: > 32 KiB
JOIN_RETRY_MAX = 15.0  # seconds between a member's attempts at most (misses run past 3 only if
                       # CONVENTION_REGISTRATION_MISS_MAX is raised in the environment)
MAX_FRAME = 1 << 30  # bytes: a larger declared frame is treated as corrupt
LEAST_DELAY = timedelta(microseconds=1)  # what a timer not yet expired has left at least (patch 12)


def _init(self, af, socktype, proto, baseaddr=None, port=0, external=False):  # type: ignore[no-untyped-def]
    _original_init(self, af, socktype, proto, baseaddr, port, external)
    host = os.environ.get(BIND_ENV)
    if host and self.bindname and self.bindname[0] in ("", "0.0.0.0"):
        self.bindname = (host,) + tuple(self.bindname[1:])


def _add_more(self, buf):  # type: ignore[no-untyped-def]
    """ReceiveBuffer.addMore that marks a frame corrupt instead of raising (see 3. above)."""
    try:
        _original_add_more(self, buf)
    except ValueError:
        _corrupt(self, "a size prefix that is not a number")
        return
    if self._size is not None and not 0 <= self._size <= MAX_FRAME:
        _corrupt(self, f"a declared size of {self._size} bytes")


def _corrupt(buffer: Any, why: str) -> None:
    buffer._size, buffer._buf, buffer._blen = None, b"", 41  # isDone() and completed() is None: dropped
    thesplog("dropping a malformed frame (%s)", why, level=logging.WARNING)
    structlog.get_logger("supervision").warning("malformed_frame_dropped", why=why)


def allowed_peers() -> frozenset[str] | None:
    """The IP addresses this process accepts connections from (None: any)."""
    listed = os.environ.get(PEERS_ENV)
    return None if listed is None else _parse_peers(listed, os.environ.get(BIND_ENV, ""))


@functools.lru_cache(maxsize=8)
def _parse_peers(listed: str, bound: str) -> frozenset[str]:
    return frozenset(p.strip() for p in listed.split(",") if p.strip()) | {"127.0.0.1", bound}


def _accept_new_incoming(self):  # type: ignore[no-untyped-def]
    """TCPTransport._acceptNewIncoming: closes connections from unlisted peers before reading a byte and
    makes every other one the server side of an authenticated channel.

    Thespian's own version queues an internal wake-up after a failed accept that its admin cannot
    handle, so a refusal must look like no connection at all, not like an accept error."""
    peers = allowed_peers()
    try:
        sock, remote = self.new_socket(self.socket.accept)
    except OSError as exc:
        thesplog("Error accepting incoming: %s", exc)
        self._check_indicators()
        return None
    self._check_indicators()
    if peers is not None and remote[0] not in peers:
        sock.close()
        thesplog("refused a connection from unlisted peer %s (allowed: %s)", remote[0], sorted(peers),
                 level=logging.WARNING)
        structlog.get_logger("supervision").warning("connection_refused", peer=remote[0], allowed=sorted(peers))
        return None
    if remote == self.myAddress:
        self._incomingEnvelopes.append(TCPTransport.Thespian__UpdateWork())
    sock = channel.SecureSocket.accepted(sock)
    sock.setblocking(0)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    incoming = TCPTransport.TCPIncomingPersistent if hasattr(self, "_openSockets") else TCPTransport.TCPIncoming
    self._incomingSockets[sock.fileno()] = incoming(TCPTransport.ActorAddress(None), sock)
    return None


def _new_socket(self, op, *args, **kw):  # type: ignore[no-untyped-def]
    """TCPTransport.new_socket: the sockets Thespian opens to send are authenticated channels' clients."""
    outgoing = op is socket.socket or op is _RangeBoundSocket
    return _original_new_socket(self, channel.SecureSocket if outgoing else op, *args, **kw)


def _wait_for_sendable(intent) -> bool:  # type: ignore[no-untyped-def]
    """TCPTransport._waitForSendable: also wait to read while a handshake waits on the server."""
    if intent.stage == TCPTransport.TCPTransport._XMITStepWaitForAck:
        return False
    return not getattr(getattr(intent, "socket", None), "awaiting_peer", False)


def _handle_readable_incoming(self, inc, has_exclusive_flag=False):  # type: ignore[no-untyped-def]
    """TCPTransport._handleReadableIncoming, where a read that advanced the handshake or a record without
    completing one keeps the connection watched (Thespian would back off on it as on an empty read)."""
    try:
        rdata = inc.socket.recv(min(1024000, inc.remainingSize()))
        inc.failCount = 0
    except channel.NoFrameBytesYet:
        inc.failCount = 0
        return inc
    except OSError as exc:
        inc.failCount = getattr(inc, "failCount", 0) + 1
        if TCPTransport.err_recv_inprogress(exc.errno) and inc.failCount < TCPTransport.MAX_CONSECUTIVE_READ_FAILURES:
            inc.backoffPause(True)
            return inc
        inc.close()
        return None
    if not rdata:  # closed (or failed authentication): an incomplete frame is discarded
        inc.close()
        return None
    try:
        inc.addData(rdata)
    except Exception:  # noqa: BLE001 - Thespian's own rule: bad data closes that one connection
        thesplog("corrupted incoming data; closing socket", level=logging.WARNING)
        inc.close()
        return None
    return self._addedDataToIncoming(inc, has_exclusive_flag=has_exclusive_flag)


class _Frames:
    """Thespian's serializer (module ``TCPTransport.serializer``), loading only well-formed frames."""

    dumps = staticmethod(pickle.dumps)

    @staticmethod
    def loads(data: bytes) -> Any:
        frame = pickle.loads(data)
        if isinstance(frame, str) and streamBuffer.isControlMessage(frame):
            return frame
        if (isinstance(frame, tuple) and len(frame) == 2 and isinstance(frame[0], ActorAddress)
                and isinstance(frame[0].addressDetails, IPBase.IPActorAddress)):
            return frame
        why = f"a frame that is not (sender address, message) but a {type(frame).__name__}"
        structlog.get_logger("supervision").warning("malformed_frame_dropped", why=why)
        raise ValueError(why)


def _from_member_only(original: Any, what: str) -> Any:
    """A convention handler that passes on only a change a member makes about itself (see 5. above)."""
    def handler(self, envelope):  # type: ignore[no-untyped-def]
        return original(self, envelope) if _from_member_itself(envelope, what) else True
    return handler


_h_convention_register = _from_member_only(_original_register, "register")
_h_convention_deregister = _from_member_only(_original_deregister, "de-register")


def _registration_failed(self, result, finished_intent):  # type: ignore[no-untyped-def]
    """LocalConventionState._setupConventionCBError, then the next attempt soon (see 6. above)."""
    _original_registration_failed(self, result, finished_intent)
    misses = getattr(self, "_conventionLeaderMissCount", 1)
    delay = min(JOIN_RETRY_MAX, 2.0 ** (misses - 1))
    self._conventionRegistration = ExpirationTimer(timedelta(seconds=delay))


def _inattention_delay(self, current_time):  # type: ignore[no-untyped-def]
    """LocalConventionState.convention_inattention_delay, at most a second while not joined (see 6. above)."""
    delay = _original_inattention(self, current_time)
    if self.isConventionLeader() or self.active_in_convention() or not self.conventionLeaderAddr:
        return delay
    return min(delay, ExpirationTimer(timedelta(seconds=1)).view(current_time))


def _member_checks(self, ct):  # type: ignore[no-untyped-def]
    """LocalConventionState._convention_member_checks, trying again at once after the miss that makes
    Thespian give up on a leader this member never joined (see 6. above)."""
    never_joined = not self.active_in_convention()
    gives_up = getattr(self, "_conventionLeaderMissCount", 0) >= convention.CONVENTION_REGISTRATION_MISS_MAX
    due = self._conventionRegistration.view(ct).expired()
    messages = _original_member_checks(self, ct)
    if never_joined and gives_up and due and self.conventionLeaderAddr:
        messages = messages + self.setup_convention()
    return messages


def _from_member_itself(envelope: Any, what: str) -> bool:
    if getattr(envelope.message, "adminAddress", None) == envelope.sender:
        return True
    structlog.get_logger("supervision").warning("convention_change_ignored", change=what,
                                                member=str(getattr(envelope.message, "adminAddress", None)),
                                                sender=str(envelope.sender))
    return False


def actor_ports() -> tuple[int, int] | None:
    """The (first, last) port actors listen on in this process (None: any ephemeral port)."""
    spec = os.environ.get(PORTS_ENV)
    return None if not spec else parse_port_range(spec, PORTS_ENV)


def parse_port_range(spec: str, what: str) -> tuple[int, int]:
    """``"20000-20999"`` → (20000, 20999), or ValueError saying how to write it."""
    first, sep, last = str(spec).partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit() \
            or not 0 < int(first) <= int(last) < 65536:
        raise ValueError(f"{what}: {spec!r} is not a port range; write it as 'first-last', e.g. '20000-20999'")
    return int(first), int(last)


class _RangeBoundSocket(socket.socket):
    """A listening socket that takes a free port of :func:`actor_ports` where it would take an ephemeral one."""

    def bind(self, address):  # type: ignore[no-untyped-def]
        ports = actor_ports()
        if ports is None or not isinstance(address, tuple) or address[1] != 0:
            return super().bind(address)
        first, last = ports
        span = last - first + 1
        start = random.randrange(span)  # processes binding at once rarely race for the same port
        for i in range(span):
            try:
                return super().bind((address[0], first + (start + i) % span, *address[2:]))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port in {PORTS_ENV}={first}-{last}: widen the range (actor_ports)")


class _SocketModule(types.ModuleType):
    """What Thespian's TCP transport sees as ``socket``: the module, with its listening sockets range-bound."""

    socket = _RangeBoundSocket

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)


class _Ready:
    """What a ready socket is reported as (Thespian reads its ``fd``)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd


class LeanPollSelector:
    """The transport's per-turn selector (patch 10): ``selectors.PollSelector``'s readiness (the same events
    reported for the same poll results, ``InterruptedError`` read as nothing ready) with none of its
    bookkeeping. Registering a descriptor twice adds the events (``selectors`` raises KeyError)."""

    __slots__ = ("_poll", "_events")

    def __init__(self) -> None:
        self._poll = select.poll()
        self._events: dict[int, int] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        events |= self._events.get(fd, 0)
        self._events[fd] = events
        self._poll.register(fd, (select.POLLIN if events & selectors.EVENT_READ else 0)
                            | (select.POLLOUT if events & selectors.EVENT_WRITE else 0))

    def select(self, timeout: float | None = None) -> list[tuple[_Ready, int]]:
        wait = None if timeout is None else 0 if timeout <= 0 else math.ceil(timeout * 1e3)  # (at least timeout)
        try:
            ready = self._poll.poll(wait)
        except InterruptedError:
            return []
        found = []
        for fd, event in ready:
            events = ((selectors.EVENT_WRITE if event & ~select.POLLIN else 0)
                      | (selectors.EVENT_READ if event & ~select.POLLOUT else 0))
            found.append((_Ready(fd), events & self._events.get(fd, 0)))
        return found

    def close(self) -> None:
        self._events.clear()


class _SelectorsModule(types.ModuleType):
    """What Thespian's TCP transport sees as ``selectors``: the module, with a lean ``poll`` as its default
    selector."""

    DefaultSelector = LeanPollSelector
    EVENT_READ, EVENT_WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE  # read every turn: no __getattr__ call

    def __getattr__(self, name: str) -> Any:
        return getattr(selectors, name)


@functools.cache
def _on_fresh_chunk() -> Any:
    """``enter(fn, *args)``: ``fn(*args)`` called from a frame of ``FRESH_CHUNK_SLOTS`` slots (patch 11). Its
    local names make the frame that large; it is compiled once per process, when first needed."""
    names = " = ".join(f"_{i}" for i in range(FRESH_CHUNK_SLOTS))
    source = f"def enter(fn, *args):\n    {names} = None\n    return fn(*args)\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<supervision: fresh frame chunk>", "exec"), namespace)  # noqa: S102 - our own text
    return namespace["enter"]


def _actor_run(self):  # type: ignore[no-untyped-def]
    return _on_fresh_chunk()(_original_actor_run, self)


def _admin_run(self):  # type: ignore[no-untyped-def]
    return _on_fresh_chunk()(_original_admin_run, self)


def _pop_expired_wakeups(self, ct):  # type: ignore[no-untyped-def]
    """Thespian's WakeupManager._pop_expired_wakeups: (target, ExpirationTimer, payload) entries due at ``ct``."""
    expired, pending = [], []
    for entry in self._wakeUps:
        quit_at = entry[1]._time_to_quit
        (expired if quit_at is not None and ct >= quit_at else pending).append(entry)
    self._wakeUps = pending
    return expired


def _remaining(self, forever=None):  # type: ignore[no-untyped-def]
    """ExpirationTimerView.remaining, at least a microsecond while the time is not up (patch 12)."""
    if self._time_to_quit is None:
        return forever
    left = self._time_to_quit - self._current_time
    return max(timedelta(seconds=left), LEAST_DELAY) if left > 0 else timedelta(0)


def _envelope_identity(self):  # type: ignore[no-untyped-def]
    return f"ReceiveEnvelope(from: {self.sender}, msg: {type(self.message).__name__})"


def _intent_identity(self):  # type: ignore[no-untyped-def]
    state = "pending" if self.result is None else f"={self.result}"
    return f"TransportIntent({self.targetAddr}-{state}-{type(self.message).__name__})"


def set_base_address(host: str) -> None:
    """This process's address on the network: new sockets bind to it, and Thespian's idea of which
    addresses are "this system" is rebuilt from the interfaces plus ``host`` (it is read once at
    import, so a value inherited from a parent on another host would make that host look local)."""
    os.environ[BIND_ENV] = host
    os.environ["THESPIAN_BASE_IPADDR"] = host
    IPBase.thisSystem._myAddresses = set(IPBase.getLocalAddresses()) | {host}


def forget_child(actor: Any, address: Any) -> None:
    """Treat ``actor``'s child at ``address`` as exited, as Thespian does on ChildActorExited.

    For a child whose exit will never be reported (its host is gone): Thespian would otherwise keep
    retrying messages to it for minutes and hold the parent's own exit until it answers."""
    manager = getattr(actor, "_myRef", None)
    if manager is not None and address in getattr(manager, "childAddresses", ()):
        manager._handleChildExited(address)


def tell_self(actor: Any, message: Any) -> None:
    """Put ``message`` in ``actor``'s own mailbox from another thread of its process.

    Thespian's ``send`` may only be called from the actor's thread. On the TCP transport the envelope
    goes where the transport queues what an actor sends itself, and its select loop is woken with
    ``interrupt_wait`` (what Thespian does itself for a send to self, or after a signal). On
    simpleSystemBase the send is queued (one list append, atomic; not under the system's lock, which
    the thread driving the system holds while an actor runs, so a ``terminate`` that joins this thread
    cannot deadlock) and runs at the next call into the system, as a timer does.
    """
    ref = actor._myRef
    transport = getattr(ref, "transport", None)
    if transport is not None and hasattr(transport, "_incomingEnvelopes") and hasattr(transport, "interrupt_wait"):
        transport._incomingEnvelopes.append(ReceiveEnvelope(transport.myAddress, message))
        transport.interrupt_wait()
        return
    system = getattr(getattr(ref, "_system", None), "_systemBase", None)
    if system is not None and hasattr(system, "_pendingSends"):
        system._pendingSends.append(simpleSystemBase.PendingSend(ref.address, message, ref.address))
        return
    raise NotImplementedError(f"cannot reach the mailbox of {type(actor).__name__} on this Thespian base")


def send_from_outside(context: Any, address: Any, message: Any, wait: float = 0.0) -> Any:
    """Send ``message`` to ``address`` from an outside endpoint (a ``private()`` context) and run its
    transport for at most ``wait`` seconds; return the transmit's track (``.failed`` once it failed).

    ``ActorSystem.tell`` runs the transport until the transmit completes or fails: to an actor that
    exits while the connection opens that took up to its 60 s limit, holding the caller (a runtime's
    reply driver, whose deadlines and liveness checks then stopped). What is left of the transmit is
    carried out by the endpoint's next ``listen`` (or next send)."""
    system = context._systemBase
    track = system._tx_to_actor(address, message)
    if wait > 0:
        system._run_transport(timedelta(seconds=wait), txonly=True)
    return track


def install() -> None:
    """Idempotent; called by ActorRuntime before any actor system starts."""
    patches = [(IPBase.IPActorAddress, "__init__", _init),
               (TCPTransport.TCPTransport, "_acceptNewIncoming", _accept_new_incoming),
               (TCPTransport.TCPTransport, "new_socket", _new_socket),
               (TCPTransport.TCPTransport, "_waitForSendable", staticmethod(_wait_for_sendable)),
               (TCPTransport.TCPTransport, "_handleReadableIncoming", _handle_readable_incoming),
               (streamBuffer.ReceiveBuffer, "addMore", _add_more),
               (convention.ConventioneerAdmin, "h_ConventionRegister", _h_convention_register),
               (convention.ConventioneerAdmin, "h_ConventionDeRegister", _h_convention_deregister),
               (convention.LocalConventionState, "_setupConventionCBError", _registration_failed),
               (convention.LocalConventionState, "convention_inattention_delay", _inattention_delay),
               (convention.LocalConventionState, "_convention_member_checks", _member_checks),
               (simpleSystemBase.WakeupManager, "_pop_expired_wakeups", _pop_expired_wakeups),
               (ExpirationTimerView, "remaining", _remaining),
               (ReceiveEnvelope, "identify", _envelope_identity),
               (TransmitIntent, "identify", _intent_identity),
               (actorManager.ActorManager, "run", _actor_run),
               (convention.ConventioneerAdmin, "run", _admin_run)]
    for owner, name, patched in patches:
        setattr(owner, name, patched)
    TCPTransport.serializer = _Frames
    TCPTransport.socket = _SocketModule("socket")
    TCPTransport.selectors = _SelectorsModule("selectors")


def log_defs() -> dict:
    """Thespian's own logging config for actor processes (False would crash multiproc actors)."""
    return {"version": 1, "disable_existing_loggers": False,
            "handlers": {"null": {"class": "logging.NullHandler"}},
            "root": {"handlers": ["null"], "level": "WARNING"}}
