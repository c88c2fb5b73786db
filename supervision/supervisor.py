"""SupervisorActor: executes OTP supervision on Thespian.

A supervisor cannot block while a child starts or stops (Thespian actors are message driven), so
each multi-step operation (start the children, handle an exit, a request) is a generator that
``yield``s what it waits for (a start reply, an exit, a timer). Operations run one at a time in
arrival order, as they would inside an OTP supervisor process; decisions come from
:mod:`supervision.planning`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Optional

from thespian.actors import ActorExitRequest, ChildActorExited

from . import _thespian, planning, procfs
from .errors import ActorExited, FailedToStartChild, SpecError, SupervisionError
from .gen_server import GenServer, Lifecycle, NoReply, describe
from .messages import (ChildCounts, ChildInfo, CountChildren, DeleteChild, ExitNotice, GetChild,
                       Init, InitFailed, InitOk, LifecycleEvent, Register, RestartChild, StartChild,
                       StopRequest, StopTree, TerminateChild, Unregister, WhichChildren)
from .ref import ActorRef
from .resilience.backoff import exponential_backoff
from .specs import (BRUTAL_KILL, INFINITY, ChildSpec, Kind, Restart, Strategy, SupervisorSpec,
                    resolve_actor_class, validate_children)

KILL_WAIT = 5.0  # seconds to wait for the exit of a child we killed
LIVENESS_EVERY = 1.0  # seconds between checks that child processes on this node still exist


@dataclass
class _Kid:
    spec: ChildSpec
    address: Any = None
    pid: int = 0
    node: str = ""
    generation: int = 0
    notice: Optional[ExitNotice] = None


@dataclass(frozen=True)
class _WaitStart:
    address: Any
    timeout: float


@dataclass(frozen=True)
class _WaitExit:
    address: Any
    timeout: Optional[float]


@dataclass(frozen=True)
class _Sleep:
    timeout: float  # seconds to sleep (named like the other waits' timeouts)


@dataclass(frozen=True)
class _Timer:
    """Payload of a supervisor timer: resumes the operation waiting under ``seq``."""

    seq: int


@dataclass(frozen=True)
class _CheckLiveness:
    """Timer payload: look for child processes that died without an exit notice reaching us."""


@dataclass(frozen=True)
class _Exit:
    reason: str
    normal: bool


TIMEOUT = object()
Op = Generator[Any, Any, Any]


@dataclass
class _Pending:
    op: Op
    done: Callable[[Any, Optional[BaseException]], None]


@dataclass
class SupervisorState:
    """Everything a supervisor knows, in one place (OTP's ``#state`` record)."""

    spec: SupervisorSpec = field(default_factory=SupervisorSpec)
    kids: dict[str, _Kid] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # child ids in start order
    restarts: tuple[float, ...] = ()  # restart times within the intensity period (planning.record_restart)
    template: Optional[ChildSpec] = None  # simple_one_for_one's child template
    instances: int = 0  # simple_one_for_one children started so far (their ids)
    queue: deque[_Pending] = field(default_factory=deque)  # operations waiting their turn
    current: Optional[_Pending] = None  # the operation running now
    waiting: Any = None  # what it waits for (_WaitStart, _WaitExit, _Sleep)
    wait_seq: int = 0  # tells a current timer from a stale one
    orphan_notices: list[tuple[Any, ExitNotice]] = field(default_factory=list)  # notices before their child is known
    failed_child: Optional[str] = None  # the grandchild that failed a nested start
    liveness_armed: bool = False


class SupervisorActor(GenServer):
    """A supervisor (kind "supervisor"); started from a :class:`SupervisorSpec` in a ChildSpec."""

    def __init__(self) -> None:
        super().__init__()
        self.state = SupervisorState()

    # --- init: start all children, reply to the parent when done --------------------------------

    def _sv_on_init(self, msg: Init, sender: Any) -> None:
        self._sv_setup(msg, sender)
        self.state = SupervisorState(spec=msg.kwargs["spec"])
        self._sv_state = Lifecycle.RUNNING
        children: tuple = tuple(msg.kwargs.get("children", ()))

        def done(value: Any, error: Optional[BaseException]) -> None:
            match error:
                case None:
                    self.send(sender, InitOk(self.myAddress, os.getpid(), procfs.node_id()))
                    return
                case FailedToStartChild(reason=reason, id=failed):
                    self.send(sender, InitFailed(reason, self.myAddress, failed))
                case _:
                    self.send(sender, InitFailed(describe(error), self.myAddress))
            self._sv_state = Lifecycle.DONE
            self.send(self.myAddress, ActorExitRequest())

        self._enqueue(self._op_init(children), done)

    def _op_init(self, children: tuple) -> Op:
        """Start children left to right; on a failure stop the started ones in reverse order."""
        if self.state.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            self.state.template = children[0]
            return None
        started: list[str] = []
        for child in children:
            self._add_kid(child)
            reason = yield from self._start_kid(child.id)
            if reason is not None:
                failed = self.state.failed_child or child.id
                for cid in reversed(started):
                    yield from self._stop_kid(cid)
                raise FailedToStartChild(failed, reason)
            started.append(child.id)
        return None

    def _sv_on_stop_request(self, msg: StopRequest) -> None:
        # Drop queued work, then stop the children (reverse order) and exit normally.
        for pending in self.state.queue:
            pending.done(None, ActorExited(self.actor_path, "supervisor shutting down"))
        self.state.queue.clear()
        self._enqueue(self._op_shutdown(msg.reason, normal=True))

    # --- requests ------------------------------------------------------------------------------

    def handle_call(self, request: Any) -> Any:
        token = self.current_call
        op = self._request_op(request)

        def done(value: Any, error: Optional[BaseException]) -> None:
            match error:
                case None:
                    self.reply(token, value)
                case SupervisionError():
                    self.reply_error(token, error)
                case _:
                    self.reply_error(token, SupervisionError(describe(error)))
                    raise error

        self._enqueue(op, done)
        return NoReply

    def _request_op(self, request: Any) -> Op:
        """The operation a request runs: one clause per request type."""
        match request:
            case WhichChildren():
                return self._op_value(self._which_children)
            case CountChildren():
                return self._op_value(self._count_children)
            case GetChild(id=cid):
                return self._op_value(lambda: self._kid(cid).address)
            case StartChild():
                return self._op_start_child(request)
            case TerminateChild(id=cid):
                return self._op_terminate_child(cid)
            case RestartChild(id=cid):
                return self._op_restart_child(cid)
            case DeleteChild(id=cid):
                return self._op_value(lambda: self._delete_child(cid))
            case StopTree(reason=reason):
                return self._op_stop_all(reason)
            case _:
                return self._op_value(lambda: self.handle_request(request))

    def handle_request(self, request: Any) -> Any:
        """Requests a subclass adds (the root's registry); unknown ones are a caller error."""
        raise SpecError("request", f"a supervisor does not understand {type(request).__name__}")

    @staticmethod
    def _op_value(fn: Callable[[], Any]) -> Op:
        return fn()
        yield  # pragma: no cover - makes this a generator

    def _which_children(self) -> list[ChildInfo]:
        return [self._info(cid) for cid in self.state.order]

    def _count_children(self) -> ChildCounts:
        kids = [self.state.kids[c] for c in self.state.order]
        sups = sum(1 for k in kids if k.spec.kind is Kind.SUPERVISOR)
        return ChildCounts(specs=len(kids), active=sum(1 for k in kids if k.address is not None),
                           supervisors=sups, workers=len(kids) - sups)

    def _kid(self, cid: str) -> _Kid:
        try:
            return self.state.kids[cid]
        except KeyError:
            raise SpecError("id", f"supervisor {self.actor_path} has no child {cid!r}",
                            "see which_children() for the ids") from None

    def _op_start_child(self, request: StartChild) -> Op:
        if self.state.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            if request.spec is not None:
                raise SpecError("start_child", "a simple_one_for_one supervisor starts children from its template",
                                "pass args/kwargs instead of a ChildSpec")
            self.state.instances += 1
            t = self.state.template
            spec = replace(t, id=f"{t.id}-{self.state.instances}", args=t.args + tuple(request.args),
                           kwargs={**t.kwargs, **request.kwargs})
        else:
            spec = request.spec
            if spec is None:
                raise SpecError("start_child", "needs a ChildSpec")
            if spec.id in self.state.kids:
                raise SpecError("ChildSpec.id", f"duplicate child id {spec.id!r} in {self.actor_path}",
                                "pick another id or delete_child() the old one")
            validate_children(self.state.spec, [spec], where=f"{self.actor_path}.start_child")
        self._add_kid(spec)
        reason = yield from self._start_kid(spec.id)
        if reason is not None:
            self._remove_kid(spec.id)
            raise FailedToStartChild(self.state.failed_child or spec.id, reason)
        return self._info(spec.id)

    def _info(self, cid: str) -> ChildInfo:
        k = self.state.kids[cid]
        ref = ActorRef(k.address, f"{self.actor_path}/{cid}", k.spec.kind) if k.address is not None else None
        return ChildInfo(cid, ref, k.spec.restart, k.spec.kind)

    def _op_terminate_child(self, cid: str) -> Op:
        kid = self._kid(cid)
        yield from self._stop_kid(cid)
        if kid.spec.restart is Restart.TEMPORARY or self.state.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            self._remove_kid(cid)
        return None

    def _stopped_kid(self, cid: str, action: str) -> _Kid:
        """The child ``cid`` for restart_child / delete_child, which OTP allows only on stopped children."""
        kid = self._kid(cid)
        if self.state.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            raise SpecError(action, "not supported by simple_one_for_one (as in OTP)")
        if kid.address is not None:
            raise SpecError(action, f"child {cid!r} is running", "terminate_child() it first")
        return kid

    def _op_restart_child(self, cid: str) -> Op:
        self._stopped_kid(cid, "restart_child")
        reason = yield from self._start_kid(cid)
        if reason is not None:
            raise FailedToStartChild(cid, reason)
        return self._info(cid)

    def _delete_child(self, cid: str) -> None:
        self._stopped_kid(cid, "delete_child")
        self._remove_kid(cid)

    # --- exits ---------------------------------------------------------------------------------

    def handle_info(self, message: Any) -> None:
        match message:
            case InitOk(address=address) | InitFailed(address=address):
                self._resume_if(lambda w: isinstance(w, _WaitStart) and w.address == address, message)
            case ChildActorExited():
                self._on_child_exited(message.childAddress)
            case _Timer(seq=seq):
                if self.state.waiting is not None and seq == self.state.wait_seq:
                    self._resume(TIMEOUT)
            case _CheckLiveness():
                self.state.liveness_armed = False
                self._check_liveness()
            case _:
                self.handle_other(message)

    def handle_other(self, message: Any) -> None:
        """Messages a subclass handles (the root's registry and events)."""
        self.actor_log.debug("ignored", message=type(message).__name__)

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802
        match msg:
            case ExitNotice():
                self._on_notice(sender, msg)
            case _:
                super().receiveMessage(msg, sender)

    def _on_notice(self, sender: Any, notice: ExitNotice) -> None:
        kid = self._kid_at(sender)
        if kid is not None:
            kid.notice = notice
            return
        self.state.orphan_notices.append((sender, notice))
        del self.state.orphan_notices[:-50]

    def _notice_for(self, address: Any) -> Optional[ExitNotice]:
        for i, (addr, notice) in enumerate(self.state.orphan_notices):
            if addr == address:
                del self.state.orphan_notices[i]
                return notice
        return None

    def _exit_of(self, kid: Optional[_Kid], address: Any) -> _Exit:
        """Why the child at ``address`` exited: its notice, else killed (no notice means abnormal)."""
        notice = (kid.notice if kid is not None else None) or self._notice_for(address)
        return _Exit(notice.reason, notice.normal) if notice else _Exit("killed", False)

    def _on_child_exited(self, address: Any) -> None:
        kid = self._kid_at(address)
        match self.state.waiting:
            case _WaitStart(address=waited) | _WaitExit(address=waited) if waited == address:
                self._resume(self._exit_of(kid, address))
                return
        if kid is None:
            return  # duplicate or stale notice (multiprocTCPBase may send two): idempotent
        exit_ = self._exit_of(kid, address)
        self._mark_down(kid, exit_)
        self._enqueue(self._op_child_exited(kid.spec.id, kid.generation, exit_))

    @staticmethod
    def _local_process(kid: _Kid) -> bool:
        """The child runs in a process of its own on this node (so its pid means something here)."""
        return bool(kid.pid) and kid.pid != os.getpid() and kid.node == procfs.node_id()

    def _check_liveness(self) -> None:
        """Thespian learns of a child's death from SIGCHLD, and two deaths close together can yield
        one notice: a child process on this node that is gone (or a zombie) is handled as exited."""
        for kid in list(self.state.kids.values()):
            if kid.address is not None and self._local_process(kid):
                if procfs.gone(kid.pid):
                    self.actor_log.warning("child_gone_unnoticed", child=kid.spec.id, child_pid=kid.pid)
                    address = kid.address
                    _thespian.forget_child(self, address)  # Thespian's own bookkeeping (and reaping) too
                    self._on_child_exited(address)
        self._arm_liveness()

    def _arm_liveness(self) -> None:
        if not self.state.liveness_armed and any(k.address is not None and self._local_process(k)
                                            for k in self.state.kids.values()):
            self.state.liveness_armed = True
            self.send_after(LIVENESS_EVERY, _CheckLiveness())

    def _kid_at(self, address: Any) -> Optional[_Kid]:
        for kid in self.state.kids.values():
            if kid.address is not None and kid.address == address:
                return kid
        return None

    def _mark_down(self, kid: _Kid, exit_: _Exit) -> None:
        address = kid.address
        kid.address, kid.pid, kid.notice = None, 0, None
        if kid.spec.name:
            self.send(self._sv_root, Unregister(kid.spec.name, address))
        self._emit("exit", kid.spec.id, exit_.reason, exit_.normal, address=address)

    def _op_child_exited(self, cid: str, generation: int, exit_: _Exit) -> Op:
        kid = self.state.kids.get(cid)
        if kid is None or kid.generation != generation or kid.address is not None:
            return None  # already restarted (or removed) by another operation
        if not planning.should_restart(kid.spec.restart, exit_.normal):
            if kid.spec.restart is Restart.TEMPORARY or self.state.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
                self._remove_kid(cid)
            running_sig = sum(1 for k in self.state.kids.values() if k.spec.significant and k.address is not None)
            if planning.should_auto_shutdown(self.state.spec.auto_shutdown, kid.spec.significant, running_sig):
                self._emit("auto_shutdown", cid, exit_.reason)
                yield from self._op_shutdown("shutdown", normal=True)
            return None
        yield from self._restart(cid, exit_.reason)
        return None

    def _restart(self, cid: str, reason: str) -> Op:
        now = time.monotonic()
        self.state.restarts, exceeded = planning.record_restart(self.state.restarts, now, self.state.spec.intensity, self.state.spec.period)
        if exceeded:
            why = (f"reached_max_restart_intensity: more than {self.state.spec.intensity} restart(s) in "
                   f"{self.state.spec.period:g}s (last: {cid!r}: {reason})")
            self._emit("escalate", cid, why, normal=False)
            yield from self._stop_all_kids()
            self._sv_exit(why, normal=False)
            return
        if self.state.spec.min_backoff is not None:
            delay = exponential_backoff(len(self.state.restarts) - 1, self.state.spec.min_backoff, self.state.spec.max_backoff,
                                        self.state.spec.jitter)
            if delay > 0:
                yield _Sleep(delay)
        order = list(self.state.order)
        running = [c for c in order if self.state.kids[c].address is not None]
        temporary = [c for c in order if self.state.kids[c].spec.restart is Restart.TEMPORARY]
        plan = planning.restart_plan(self.state.spec.strategy, order, running, cid, temporary)
        for sid in plan.stop:
            yield from self._stop_kid(sid)
            if self.state.kids[sid].spec.restart is Restart.TEMPORARY:
                self._remove_kid(sid)
        started: list[str] = []
        for sid in plan.start:
            if sid not in self.state.kids or self.state.kids[sid].address is not None:
                continue
            why = yield from self._start_kid(sid, restart=True)
            if why is not None:
                for s in reversed(started):
                    yield from self._stop_kid(s)
                # OTP's try_again_restart: another restart (it counts towards the intensity), queued as
                # an operation of its own so that a shutdown or a request can get in between
                self._enqueue(self._op_try_again(sid, f"restart failed: {why}"))
                return
            started.append(sid)

    def _op_try_again(self, cid: str, reason: str) -> Op:
        if cid in self.state.kids and self.state.kids[cid].address is None:
            yield from self._restart(cid, reason)

    def _op_shutdown(self, reason: str, normal: bool) -> Op:
        yield from self._stop_all_kids()
        self._sv_exit(reason, normal=normal)

    def _op_stop_all(self, reason: str) -> Op:
        yield from self._stop_all_kids(reason)
        return None

    def _stop_all_kids(self, reason: str = "shutdown") -> Op:
        for cid in reversed(list(self.state.order)):
            if cid in self.state.kids:
                yield from self._stop_kid(cid, reason)

    # --- starting and stopping one child ----------------------------------------------------------

    def _add_kid(self, spec: ChildSpec) -> None:
        self.state.kids[spec.id] = _Kid(spec)
        self.state.order.append(spec.id)

    def _remove_kid(self, cid: str) -> None:
        self.state.kids.pop(cid, None)
        if cid in self.state.order:
            self.state.order.remove(cid)

    def _start_kid(self, cid: str, restart: bool = False) -> Op:
        """Start one child; returns None on success or the failure reason."""
        kid = self.state.kids[cid]
        spec = kid.spec
        path = f"{self.actor_path}/{cid}"
        try:
            if spec.kind is Kind.SUPERVISOR:
                cls: type = SupervisorActor
                args, kwargs = (), {"spec": spec.start, "children": tuple(spec.children)}
            else:
                cls = resolve_actor_class(spec.start_path()) if isinstance(spec.start, str) else spec.start
                args, kwargs = spec.args, dict(spec.kwargs)
            address = self.createActor(cls, targetActorRequirements=spec.requirements)
        except Exception as exc:  # noqa: BLE001 - Thespian raises assorted errors for bad classes
            self._emit("start_failed", cid, describe(exc), normal=False)
            return describe(exc)
        self.send(address, Init(args, kwargs, path, spec.title or path, self._sv_root, self._sv_owner_pid))
        result = yield _WaitStart(address, self.state.spec.start_timeout)
        self.state.failed_child = None
        match result:
            case InitOk():
                kid.address, kid.pid, kid.node, kid.notice = result.address, result.pid, result.node, None
                kid.generation += 1
                if spec.name:
                    self.send(self._sv_root, Register(spec.name, result.address, spec.kind, path))
                self._emit("restart" if restart else "start", cid, pid=result.pid, address=result.address)
                self._arm_liveness()
                return None
            case InitFailed(reason=why, child=failed):
                self.state.failed_child = failed
            case _Exit(reason=reason):
                why = f"process exited during start ({reason})"
            case _:  # TIMEOUT: the child never answered
                self.send(address, ActorExitRequest())
                why = f"no reply to init within {self.state.spec.start_timeout:g}s"
        self._emit("start_failed", cid, why, normal=False)
        return why

    def _stop_kid(self, cid: str, reason: str = "shutdown") -> Op:
        kid = self.state.kids[cid]
        address = kid.address
        if address is None:
            return
        shutdown = kid.spec.shutdown
        if shutdown == BRUTAL_KILL:
            self._kill(kid)
            result = yield _WaitExit(address, KILL_WAIT)
        else:
            self.send(address, StopRequest(reason))
            result = yield _WaitExit(address, None if shutdown == INFINITY else float(shutdown))
            if result is TIMEOUT:
                self._kill(kid)
                result = yield _WaitExit(address, KILL_WAIT)
        match result:
            case _Exit():
                exit_ = result
            case _:  # no exit will come (e.g. its host is gone): stop waiting for it
                _thespian.forget_child(self, address)
                exit_ = _Exit("killed (no exit seen)", False)
        if kid.address is not None:
            self._mark_down(kid, exit_)

    def _kill(self, kid: _Kid) -> None:
        if self._local_process(kid):  # a pid elsewhere means nothing here
            try:
                os.kill(kid.pid, signal.SIGKILL)
                return
            except ProcessLookupError:
                pass
        self.send(kid.address, ActorExitRequest())

    # --- the operation runner ----------------------------------------------------------------------

    def _enqueue(self, op: Op, done: Callable[[Any, Optional[BaseException]], None] | None = None) -> None:
        self.state.queue.append(_Pending(op, done or (lambda value, error: self._raise(error))))
        self._pump()

    @staticmethod
    def _raise(error: Optional[BaseException]) -> None:
        """Default completion of internal operations: a bug surfaces as a supervisor crash."""
        if error is not None and not isinstance(error, ActorExited):
            raise error

    def _pump(self) -> None:
        while self.state.current is None and self.state.queue and self._sv_state is not Lifecycle.DONE:
            self.state.current = self.state.queue.popleft()
            self._step(None)

    def _resume_if(self, predicate: Callable[[Any], bool], value: Any) -> None:
        if self.state.waiting is not None and predicate(self.state.waiting):
            self._resume(value)

    def _resume(self, value: Any) -> None:
        self.state.waiting = None
        self.state.wait_seq += 1
        self._step(value)
        self._pump()

    def _step(self, value: Any) -> None:
        pending = self.state.current
        try:
            waited = pending.op.send(value)
        except StopIteration as stop:
            self.state.current = None
            pending.done(stop.value, None)
            return
        except SupervisionError as exc:
            self.state.current = None
            pending.done(None, exc)
            return
        self.state.waiting = waited
        self.state.wait_seq += 1
        if waited.timeout is not None:
            self.wakeupAfter(waited.timeout, payload=_Timer(self.state.wait_seq))

    # --- telemetry ---------------------------------------------------------------------------------

    def _emit(self, kind: str, child: str, reason: str = "", normal: bool = True, pid: int = 0,
              address: Any = None) -> None:
        event = LifecycleEvent(kind=kind, supervisor=self.actor_path, child=child, reason=reason, normal=normal,
                               pid=pid, address=str(address) if address is not None else "", at=time.time())
        log = self.actor_log.warning if kind in ("escalate", "start_failed") or not normal else self.actor_log.info
        log(f"child_{kind}", child=child, reason=reason or None, child_pid=pid or None)
        if self._sv_root is None or self._sv_root == self.myAddress:
            self.handle_other(event)
        else:
            self.send(self._sv_root, event)

    def _sv_exit(self, reason: str, normal: bool) -> None:
        """Fail queued requests, kill children still running (only after a bug), then exit."""
        if self._sv_state is Lifecycle.DONE:
            return
        for pending in self.state.queue:
            pending.done(None, ActorExited(self.actor_path, reason))
        self.state.queue.clear()
        for kid in self.state.kids.values():
            if kid.address is not None:
                self._kill(kid)
        super()._sv_exit(reason, normal)
