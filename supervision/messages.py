"""Messages between the runtime, supervisors and GenServers: named, frozen, picklable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .specs import ChildSpec, Kind, Restart, SupervisorSpec


# --- lifecycle of one actor -------------------------------------------------------------------

@dataclass(frozen=True)
class Init:
    """First message to a new actor: the arguments of ``init`` and where it sits in the tree."""

    args: tuple
    kwargs: dict
    path: str
    title: str
    root: Any  # ActorAddress of the runtime's root supervisor (events, registry)
    owner_pid: int


@dataclass(frozen=True)
class InitOk:
    address: Any
    pid: int
    node: str = ""  # procfs.node_id() of the child's process: its pid is only signalled on the same node


@dataclass(frozen=True)
class InitFailed:
    """``child`` names the deepest child whose start failed, when a supervisor's init fails."""

    reason: str
    address: Any = None
    child: Optional[str] = None


@dataclass(frozen=True)
class Nudge:
    """Ignored by every actor: the local runtime sends it to make due timers fire and queued sends run."""


@dataclass(frozen=True)
class StopRequest:
    """Ask an actor to run ``terminate(reason)`` and exit normally (a supervisor's shutdown)."""

    reason: str = "shutdown"


@dataclass(frozen=True)
class ThreadCrashed:
    """Sent to an actor by a helper thread of its own that died of an exception (``GenServer.spawn_thread``,
    ``report_crash``): the actor exits abnormally with ``reason``, as an OTP process does when a process
    linked to it crashes, and its supervisor restarts it per its restart type."""

    thread: str
    reason: str


@dataclass(frozen=True)
class ExitNotice:
    """Sent by an actor to its parent just before it exits: Thespian's ChildActorExited has no reason."""

    reason: str
    normal: bool


# --- calls and casts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    corr: int
    request: Any


@dataclass(frozen=True)
class Reply:
    corr: int
    value: Any


@dataclass(frozen=True)
class CallError:
    """The reply to a call that failed: ``error`` is a SupervisionError raised at the caller."""

    corr: int
    error: Exception


@dataclass(frozen=True)
class Cast:
    message: Any


@dataclass(frozen=True)
class CallToken:
    """Who to answer, for deferred replies (``return NoReply`` then ``self.reply(token, value)``)."""

    caller: Any
    corr: int


# --- supervisor requests (the ``request`` of a Call) --------------------------------------------

@dataclass(frozen=True)
class ChildInfo:
    """One row of ``which_children``; ``ref`` is None while the child is not running."""

    id: str
    ref: Any
    restart: Restart
    kind: Kind


@dataclass(frozen=True)
class ChildCounts:
    """OTP's count_children: specs, active (running), supervisors, workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclass(frozen=True)
class WhichChildren:
    pass


@dataclass(frozen=True)
class CountChildren:
    pass


@dataclass(frozen=True)
class GetChild:
    id: str


@dataclass(frozen=True)
class StartChild:
    """Start a child from a spec, or (simple_one_for_one) from the template with extra arguments."""

    spec: Optional[ChildSpec] = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TerminateChild:
    id: str


@dataclass(frozen=True)
class RestartChild:
    id: str


@dataclass(frozen=True)
class DeleteChild:
    id: str


@dataclass(frozen=True)
class StopTree:
    """Stop every child in reverse start order, honouring shutdowns; the supervisor stays up."""

    reason: str = "shutdown"


# --- root supervisor: registry, failures, events ------------------------------------------------

@dataclass(frozen=True)
class StartTop:
    spec: SupervisorSpec
    children: tuple
    name: str


@dataclass(frozen=True)
class Register:
    name: str
    address: Any
    kind: Kind
    path: str


@dataclass(frozen=True)
class Unregister:
    name: str
    address: Any


@dataclass(frozen=True)
class WhereIs:
    name: str


@dataclass(frozen=True)
class Registered:
    name: str
    address: Any
    kind: Kind
    path: str


@dataclass(frozen=True)
class IsAlive:
    address: Any


@dataclass(frozen=True)
class DrainEvents:
    pass


@dataclass(frozen=True)
class GetFailures:
    pass


@dataclass(frozen=True)
class RootFailure:
    """A top-level supervisor that exited abnormally (e.g. after exceeding its restart intensity)."""

    name: str
    reason: str
    at: float


@dataclass(frozen=True)
class LifecycleEvent:
    """One step in the life of the tree: start, exit, restart, stop, escalate, auto_shutdown, start_failed."""

    kind: str
    supervisor: str
    child: str
    reason: str = ""
    normal: bool = True
    pid: int = 0
    address: str = ""
    at: float = 0.0

    def summary(self) -> str:
        return f"{self.kind:<14} {self.supervisor}/{self.child}" + (f"  ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ActorEvent:
    """Something an actor reports about itself, not the tree: a breaker opening, a rate learned.
    Delivered to the runtime's subscribers beside the lifecycle events."""

    kind: str
    actor: str  # the reporting actor's path
    subject: str = ""  # what it is about (e.g. a client key)
    reason: str = ""
    normal: bool = True
    pid: int = 0
    at: float = 0.0

    def summary(self) -> str:
        return f"{self.kind:<14} {self.actor}" + (f"  ({self.reason})" if self.reason else "")
