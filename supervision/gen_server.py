"""GenServer: OTP's gen_server behaviour as a Thespian actor.

Subclasses implement ``init``, ``handle_call``, ``handle_cast``, ``handle_info`` and ``terminate``.
Unlike a bare Thespian actor, a handler exception is never retried by Thespian: it runs
``terminate(reason)``, answers the pending call with :class:`CallFailed`, tells the parent why
(``ExitNotice``) and exits abnormally, exactly once, so the supervisor sees one crash.

A helper thread started with ``spawn_thread`` is linked to its actor, as ``spawn_link`` links two OTP
processes: if it raises, the actor exits abnormally with the thread's reason (and is restarted).
"""

from __future__ import annotations

import enum
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable

import structlog
from thespian.actors import Actor, ActorExitRequest, PoisonMessage, WakeupMessage

from . import _thespian, procfs
from .errors import ActorExited, CallFailed
from .messages import (ActorEvent, Call, CallError, CallToken, Cast, ExitNotice, Init, InitFailed, InitOk, Nudge,
                       Reply, StopRequest, ThreadCrashed)


class _NoReplyType:
    _instance = None

    def __new__(cls) -> "_NoReplyType":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NoReply"

    def __reduce__(self) -> str:
        return "NoReply"


NoReply = _NoReplyType()
"""Return this from ``handle_call`` to answer later with ``self.reply(self.current_call, value)``."""


def set_process_title(title: str) -> None:
    """Show the actor's role in ``ps`` (only when it runs in its own process)."""
    try:
        import setproctitle
    except ImportError:  # optional at runtime; the multiproc tests require it
        return
    setproctitle.setproctitle(title)


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that forked it dies (OTP's link between a
    supervisor and its children), so a killed supervisor's tree never lives on as orphans."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the supervisors' liveness checks and the watchdog still stop the tree
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Lifecycle(enum.Enum):
    """Where a GenServer is in its life (one value, like httpx's ``ClientState``)."""

    NEW = "new"  # created by Thespian; no Init yet
    RUNNING = "running"  # initialised: handles calls, casts and infos
    DONE = "done"  # exited, killed or failed to start: answers calls with ActorExited, nothing else


class GenServer(Actor):
    """Base class of supervised actors. Override the ``init``/``handle_*``/``terminate`` callbacks.

    Internal attributes and methods use the ``_sv_`` prefix so they never collide with Thespian's.
    """

    title_prefix = "supervision"
    _sv_gen_server = True  # what specs.is_actor_class looks for

    def __init__(self) -> None:
        super().__init__()
        self._sv_state = Lifecycle.NEW
        self._sv_parent: Any = None  # the supervisor's address (from Init)
        self._sv_path = "?"  # place in the tree, e.g. "app/top/worker"
        self._sv_root: Any = None  # the root supervisor's address (events go there)
        self._sv_owner_pid: int | None = None  # the runtime owner's pid (this actor's own process if equal)
        self._sv_token: CallToken | None = None  # the call being handled
        self._sv_stop_reason: str | None = None  # set by stop(): exit after the current handler

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict, requirements: dict) -> bool:  # noqa: N802 - Thespian's name
        """Thespian's placement hook: a system can run this actor if it has every required capability
        value (``ChildSpec.requirements``); with none required, any system can."""
        return all(capabilities.get(key) == value for key, value in (requirements or {}).items())

    # --- callbacks (override) ------------------------------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Set up state; raising here is a failed start (``FailedToStartChild``)."""

    def handle_call(self, request: Any) -> Any:
        """Answer a ``call``; the return value is the reply (or ``NoReply`` to answer later)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls ({type(request).__name__})")

    def handle_cast(self, message: Any) -> None:
        """Handle a ``cast`` (no reply)."""

    def handle_info(self, message: Any) -> None:
        """Handle anything else: timers (``send_after``), Thespian system messages."""

    def terminate(self, reason: str) -> None:
        """Best-effort cleanup on shutdown or after a crash."""

    # --- API for subclasses ----------------------------------------------------------------------

    @property
    def current_call(self) -> CallToken | None:
        """Token of the call being handled, to answer later with :meth:`reply`."""
        return self._sv_token

    def reply(self, token: CallToken, value: Any) -> None:
        """Answer a call whose handler returned ``NoReply``."""
        self.send(token.caller, Reply(token.corr, value))

    def reply_error(self, token: CallToken, error: Exception) -> None:
        """Answer a deferred call with an error raised at the caller."""
        self.send(token.caller, CallError(token.corr, error))

    def stop(self, reason: str = "normal") -> None:
        """Exit normally once the current handler returns (after its reply is sent)."""
        self._sv_stop_reason = reason

    def spawn_thread(self, target: Callable[..., Any], *args: Any, name: str | None = None) -> threading.Thread:
        """Run ``target(*args)`` on a daemon thread linked to this actor (OTP's ``spawn_link``).

        If ``target`` raises (anything, ``KeyboardInterrupt`` included), the actor exits abnormally
        with the reason ``thread <name> crashed: <Type>: <message>``: ``terminate`` runs, the
        supervisor sees the exit and restarts the actor per its restart type. A thread that returns
        ends quietly. The thread must not call Thespian (``send``, ``createActor``...) itself: it
        talks to the world through a runtime handle of its own, and to its actor only by crashing.
        """
        label = name or f"{self.actor_path}:thread"

        def linked() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - whatever kills the thread takes its actor down
                self.report_crash(exc)

        thread = threading.Thread(target=linked, name=label, daemon=True)
        thread.start()
        return thread

    def report_crash(self, exc: BaseException) -> None:
        """From any thread of this actor: make the actor exit abnormally because of ``exc`` (what
        ``spawn_thread`` does when its target raises). Ignored once the actor is exiting anyway."""
        thread = threading.current_thread().name
        reason = f"thread {thread} crashed: {describe(exc)}"
        if self._sv_state is Lifecycle.DONE:
            self.actor_log.info("thread_failed_while_exiting", thread=thread, reason=describe(exc))
            return
        self.actor_log.error("thread_crashed", thread=thread, reason=describe(exc), exc_info=exc)
        try:
            _thespian.tell_self(self, ThreadCrashed(thread, reason))
        except OSError as err:  # the process is out of sockets: the crash stays logged, the actor runs on
            self.actor_log.error("thread_crash_unreported", thread=thread, reason=reason, error=describe(err))

    def send_after(self, seconds: float, message: Any) -> None:
        """Deliver ``message`` to ``handle_info`` after ``seconds``."""
        self.wakeupAfter(seconds, payload=message)

    def emit_event(self, kind: str, subject: str = "", reason: str = "", normal: bool = True) -> None:
        """Log ``kind`` and hand it to the runtime's subscribers (an :class:`ActorEvent`)."""
        (self.actor_log.info if normal else self.actor_log.warning)(kind, subject=subject, reason=reason)
        if self._sv_root is not None:
            self.send(self._sv_root, ActorEvent(kind=kind, actor=self.actor_path, subject=subject, reason=reason,
                                                normal=normal, pid=os.getpid(), at=time.time()))

    @property
    def actor_path(self) -> str:
        """Where this actor sits in the tree, e.g. ``app/top/worker``."""
        return self._sv_path

    @property
    def actor_log(self) -> Any:
        """A structlog logger bound to this actor's path and pid."""
        return structlog.get_logger("supervision").bind(actor=self.actor_path, pid=os.getpid())

    # --- Thespian entry point ------------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        match msg:
            case ActorExitRequest():
                self._sv_state = Lifecycle.DONE  # killed or system shutdown: no terminate (OTP brutal_kill)
                return
            case Call(corr=corr) if self._sv_state is Lifecycle.DONE:
                self.send(sender, CallError(corr, ActorExited(self.actor_path, "exiting")))
                return
            case _ if self._sv_state is Lifecycle.DONE:
                return
            case PoisonMessage() | Nudge():
                return  # Poison: we never raise into Thespian, so this is a peer's problem: nothing to retry
        try:
            self._sv_dispatch(msg, sender)
        except BaseException as exc:  # noqa: BLE001 - every handler failure becomes one abnormal exit
            self._sv_crash(exc)
            return
        if self._sv_stop_reason is not None:
            self._sv_exit(self._sv_stop_reason, normal=True)

    def _sv_dispatch(self, msg: Any, sender: Any) -> None:
        match msg:
            case Call():
                self._sv_on_call(msg, sender)
            case Cast(message=message):
                self.handle_cast(message)
            case Init():
                self._sv_on_init(msg, sender)
            case StopRequest():
                self._sv_on_stop_request(msg)
            case ThreadCrashed(reason=reason) if sender == self.myAddress:  # from a thread of ours (tell_self)
                self._sv_exit(reason, normal=False)
            case WakeupMessage(payload=payload) if payload is not None:
                self.handle_info(payload)
            case _:
                self.handle_info(msg)

    def _sv_on_call(self, msg: Call, sender: Any) -> None:
        self._sv_token = CallToken(sender, msg.corr)
        try:
            result = self.handle_call(msg.request)
        except BaseException as exc:
            tb = traceback.format_exc(limit=20)
            self.send(sender, CallError(msg.corr, CallFailed(self.actor_path, type(exc).__name__, str(exc), tb)))
            raise
        finally:
            self._sv_token = None
        if result is not NoReply:
            self.send(sender, Reply(msg.corr, result))

    # --- lifecycle internals -------------------------------------------------------------------

    def _sv_on_init(self, msg: Init, sender: Any) -> None:
        self._sv_setup(msg, sender)
        try:
            self.init(*msg.args, **msg.kwargs)
        except BaseException as exc:  # noqa: BLE001 - a failed start is reported, not raised
            self.actor_log.warning("init_failed", reason=describe(exc))
            self.send(sender, InitFailed(describe(exc), self.myAddress))
            self._sv_state = Lifecycle.DONE
            self.send(self.myAddress, ActorExitRequest())
            return
        self._sv_state = Lifecycle.RUNNING
        self.send(sender, InitOk(self.myAddress, os.getpid(), procfs.node_id()))

    def _sv_setup(self, msg: Init, sender: Any) -> None:
        self._sv_parent = sender
        self._sv_path = msg.path
        self._sv_root = msg.root
        self._sv_owner_pid = msg.owner_pid
        if os.getpid() != msg.owner_pid:  # an actor process of its own
            set_process_title(f"{self.title_prefix}: {msg.title}")
            die_with_parent()

    def _sv_on_stop_request(self, msg: StopRequest) -> None:
        self._sv_exit(msg.reason, normal=True)

    def _sv_crash(self, exc: BaseException) -> None:
        reason = describe(exc)
        self.actor_log.error("crashed", reason=reason, exc_info=exc)
        self._sv_exit(reason, normal=False)

    def _sv_exit(self, reason: str, normal: bool) -> None:
        """Run terminate once, tell the parent why, and leave."""
        if self._sv_state is Lifecycle.DONE:
            return
        self._sv_state = Lifecycle.DONE
        try:
            self.terminate(reason)
        except BaseException as exc:  # noqa: BLE001 - terminate is best effort, as in OTP
            self.actor_log.warning("terminate_failed", reason=describe(exc))
        if self._sv_parent is not None:
            self.send(self._sv_parent, ExitNotice(reason, normal))
        self.send(self.myAddress, ActorExitRequest())


__all__ = ["GenServer", "Lifecycle", "NoReply", "set_process_title", "describe"]
