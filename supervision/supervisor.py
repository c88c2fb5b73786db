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
from dataclasses import dataclass
from typing import Any, Callable, Generator, Optional

from thespian.actors import ActorExitRequest, ChildActorExited

from . import _thespian, planning, procfs
from .errors import ActorExited, FailedToStartChild, SpecError, SupervisionError
from .gen_server import GenServer, NoReply, describe
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
    seconds: float


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


class SupervisorActor(GenServer):
    """A supervisor (kind "supervisor"); started from a :class:`SupervisorSpec` in a ChildSpec."""

    # --- init: start all children, reply to the parent when done --------------------------------

    def _sv_on_init(self, msg: Init, sender: Any) -> None:
        self._sv_setup(msg, sender)
        spec: SupervisorSpec = msg.kwargs["spec"]
        children: tuple = tuple(msg.kwargs.get("children", ()))
        self.spec = spec
        self.kids: dict[str, _Kid] = {}
        self.order: list[str] = []
        self.restarts: tuple[float, ...] = ()
        self.template: Optional[ChildSpec] = None
        self.instances = 0
        self.queue: deque[_Pending] = deque()
        self.current: Optional[_Pending] = None
        self.waiting: Any = None
        self.wait_seq = 0
        self.orphan_notices: list[tuple[Any, ExitNotice]] = []
        self._failed_child: Optional[str] = None
        self._liveness_armed = False

        def done(value: Any, error: Optional[BaseException]) -> None:
            if error is None:
                self.send(sender, InitOk(self.myAddress, os.getpid(), procfs.node_id()))
                return
            if isinstance(error, FailedToStartChild):
                self.send(sender, InitFailed(error.reason, self.myAddress, error.id))
            else:
                self.send(sender, InitFailed(describe(error), self.myAddress))
            self._sv_done = True
            self.send(self.myAddress, ActorExitRequest())

        self._enqueue(self._op_init(children), done)

    def _op_init(self, children: tuple) -> Op:
        """Start children left to right; on a failure stop the started ones in reverse order."""
        if self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            self.template = children[0]
            return None
        started: list[str] = []
        for child in children:
            self._add_kid(child)
            reason = yield from self._start_kid(child.id)
            if reason is not None:
                failed = self._failed_child or child.id
                for cid in reversed(started):
                    yield from self._stop_kid(cid)
                raise FailedToStartChild(failed, reason)
            started.append(child.id)
        return None

    def _sv_on_stop_request(self, msg: StopRequest) -> None:
        # Drop queued work, then stop the children (reverse order) and exit normally.
        for pending in self.queue:
            pending.done(None, ActorExited(self.actor_path, "supervisor shutting down"))
        self.queue.clear()
        self._enqueue(self._op_shutdown(msg.reason, normal=True))

    # --- requests ------------------------------------------------------------------------------

    def handle_call(self, request: Any) -> Any:
        token = self.current_call
        op = self._request_op(request)

        def done(value: Any, error: Optional[BaseException]) -> None:
            if error is None:
                self.reply(token, value)
            elif isinstance(error, SupervisionError):
                self.reply_error(token, error)
            else:
                self.reply_error(token, SupervisionError(describe(error)))
                raise error

        self._enqueue(op, done)
        return NoReply

    def _request_op(self, request: Any) -> Op:
        if isinstance(request, WhichChildren):
            return self._op_value(self._which_children)
        if isinstance(request, CountChildren):
            return self._op_value(self._count_children)
        if isinstance(request, GetChild):
            return self._op_value(lambda: self._kid(request.id).address)
        if isinstance(request, StartChild):
            return self._op_start_child(request)
        if isinstance(request, TerminateChild):
            return self._op_terminate_child(request.id)
        if isinstance(request, RestartChild):
            return self._op_restart_child(request.id)
        if isinstance(request, DeleteChild):
            return self._op_value(lambda: self._delete_child(request.id))
        if isinstance(request, StopTree):
            return self._op_stop_all(request.reason)
        return self._op_value(lambda: self.handle_request(request))

    def handle_request(self, request: Any) -> Any:
        """Requests a subclass adds (the root's registry); unknown ones are a caller error."""
        raise SpecError("request", f"a supervisor does not understand {type(request).__name__}")

    @staticmethod
    def _op_value(fn: Callable[[], Any]) -> Op:
        return fn()
        yield  # pragma: no cover - makes this a generator

    def _which_children(self) -> list[ChildInfo]:
        return [ChildInfo(cid, ActorRef(k.address, f"{self.actor_path}/{cid}", k.spec.kind) if k.address else None,
                          k.spec.restart, k.spec.kind)
                for cid in self.order for k in (self.kids[cid],)]

    def _count_children(self) -> ChildCounts:
        kids = [self.kids[c] for c in self.order]
        sups = sum(1 for k in kids if k.spec.kind is Kind.SUPERVISOR)
        return ChildCounts(specs=len(kids), active=sum(1 for k in kids if k.address is not None),
                           supervisors=sups, workers=len(kids) - sups)

    def _kid(self, cid: str) -> _Kid:
        try:
            return self.kids[cid]
        except KeyError:
            raise SpecError("id", f"supervisor {self.actor_path} has no child {cid!r}",
                            "see which_children() for the ids") from None

    def _op_start_child(self, request: StartChild) -> Op:
        if self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            if request.spec is not None:
                raise SpecError("start_child", "a simple_one_for_one supervisor starts children from its template",
                                "pass args/kwargs instead of a ChildSpec")
            self.instances += 1
            t = self.template
            kwargs = {**t.kwargs, **request.kwargs}
            spec = ChildSpec(id=f"{t.id}-{self.instances}", start=t.start, args=t.args + tuple(request.args),
                             kwargs=kwargs, restart=t.restart, shutdown=t.shutdown, significant=t.significant,
                             children=t.children, title=t.title, requirements=t.requirements)
        else:
            spec = request.spec
            if spec is None:
                raise SpecError("start_child", "needs a ChildSpec")
            if spec.id in self.kids:
                raise SpecError("ChildSpec.id", f"duplicate child id {spec.id!r} in {self.actor_path}",
                                "pick another id or delete_child() the old one")
            validate_children(self.spec, [spec], where=f"{self.actor_path}.start_child")
        self._add_kid(spec)
        reason = yield from self._start_kid(spec.id)
        if reason is not None:
            self._remove_kid(spec.id)
            raise FailedToStartChild(self._failed_child or spec.id, reason)
        return self._info(spec.id)

    def _info(self, cid: str) -> ChildInfo:
        k = self.kids[cid]
        return ChildInfo(cid, ActorRef(k.address, f"{self.actor_path}/{cid}", k.spec.kind), k.spec.restart, k.spec.kind)

    def _op_terminate_child(self, cid: str) -> Op:
        kid = self._kid(cid)
        yield from self._stop_kid(cid)
        if kid.spec.restart is Restart.TEMPORARY or self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            self._remove_kid(cid)
        return None

    def _stopped_kid(self, cid: str, action: str) -> _Kid:
        """The child ``cid`` for restart_child / delete_child, which OTP allows only on stopped children."""
        kid = self._kid(cid)
        if self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
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
        if isinstance(message, (InitOk, InitFailed)):
            self._resume_if(lambda w: isinstance(w, _WaitStart) and w.address == message.address, message)
        elif isinstance(message, ChildActorExited):
            self._on_child_exited(message.childAddress)
        elif isinstance(message, _Timer):
            if self.waiting is not None and message.seq == self.wait_seq:
                self._resume(TIMEOUT)
        elif isinstance(message, _CheckLiveness):
            self._liveness_armed = False
            self._check_liveness()
        else:
            self.handle_other(message)

    def handle_other(self, message: Any) -> None:
        """Messages a subclass handles (the root's registry and events)."""
        self.actor_log.debug("ignored", message=type(message).__name__)

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802
        if isinstance(msg, ExitNotice):
            self._on_notice(sender, msg)
            return
        super().receiveMessage(msg, sender)

    def _on_notice(self, sender: Any, notice: ExitNotice) -> None:
        for kid in self.kids.values():
            if kid.address is not None and kid.address == sender:
                kid.notice = notice
                return
        self.orphan_notices.append((sender, notice))
        del self.orphan_notices[:-50]

    def _notice_for(self, address: Any) -> Optional[ExitNotice]:
        for i, (addr, notice) in enumerate(self.orphan_notices):
            if addr == address:
                del self.orphan_notices[i]
                return notice
        return None

    def _on_child_exited(self, address: Any) -> None:
        if isinstance(self.waiting, (_WaitStart, _WaitExit)) and self.waiting.address == address:
            kid = self._kid_at(address)
            notice = (kid.notice if kid else None) or self._notice_for(address)
            self._resume(_Exit(notice.reason, notice.normal) if notice else _Exit("killed", False))
            return
        kid = self._kid_at(address)
        if kid is None:
            return  # duplicate or stale notice (multiprocTCPBase may send two): idempotent
        notice = kid.notice or self._notice_for(address)
        exit_ = _Exit(notice.reason, notice.normal) if notice else _Exit("killed", False)
        self._mark_down(kid, exit_)
        self._enqueue(self._op_child_exited(kid.spec.id, kid.generation, exit_))

    def _local_process(self, kid: _Kid) -> bool:
        return bool(kid.pid) and kid.pid != os.getpid() and kid.node == procfs.node_id()

    def _check_liveness(self) -> None:
        """Thespian learns of a child's death from SIGCHLD, and two deaths close together can yield
        one notice: a child process on this node that is gone (or a zombie) is handled as exited."""
        for kid in list(self.kids.values()):
            if kid.address is not None and self._local_process(kid):
                if procfs.gone(kid.pid):
                    self.actor_log.warning("child_gone_unnoticed", child=kid.spec.id, child_pid=kid.pid)
                    address = kid.address
                    _thespian.forget_child(self, address)  # Thespian's own bookkeeping (and reaping) too
                    self._on_child_exited(address)
        self._arm_liveness()

    def _arm_liveness(self) -> None:
        if not self._liveness_armed and any(k.address is not None and self._local_process(k)
                                            for k in self.kids.values()):
            self._liveness_armed = True
            self.send_after(LIVENESS_EVERY, _CheckLiveness())

    def _kid_at(self, address: Any) -> Optional[_Kid]:
        for kid in self.kids.values():
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
        kid = self.kids.get(cid)
        if kid is None or kid.generation != generation or kid.address is not None:
            return None  # already restarted (or removed) by another operation
        if not planning.should_restart(kid.spec.restart, exit_.normal):
            if kid.spec.restart is Restart.TEMPORARY or self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
                self._remove_kid(cid)
            running_sig = sum(1 for k in self.kids.values() if k.spec.significant and k.address is not None)
            if planning.should_auto_shutdown(self.spec.auto_shutdown, kid.spec.significant, running_sig):
                self._emit("auto_shutdown", cid, exit_.reason)
                yield from self._op_shutdown("shutdown", normal=True)
            return None
        yield from self._restart(cid, exit_.reason)
        return None

    def _restart(self, cid: str, reason: str) -> Op:
        now = time.monotonic()
        self.restarts, exceeded = planning.record_restart(self.restarts, now, self.spec.intensity, self.spec.period)
        if exceeded:
            why = (f"reached_max_restart_intensity: more than {self.spec.intensity} restart(s) in "
                   f"{self.spec.period:g}s (last: {cid!r}: {reason})")
            self._emit("escalate", cid, why, normal=False)
            yield from self._stop_all_kids()
            self._sv_exit(why, normal=False)
            return
        if self.spec.min_backoff is not None:
            delay = exponential_backoff(len(self.restarts) - 1, self.spec.min_backoff, self.spec.max_backoff,
                                        self.spec.jitter)
            if delay > 0:
                yield _Sleep(delay)
        order = list(self.order)
        running = [c for c in order if self.kids[c].address is not None]
        temporary = [c for c in order if self.kids[c].spec.restart is Restart.TEMPORARY]
        plan = planning.restart_plan(self.spec.strategy, order, running, cid, temporary)
        for sid in plan.stop:
            yield from self._stop_kid(sid)
            if self.kids[sid].spec.restart is Restart.TEMPORARY:
                self._remove_kid(sid)
        started: list[str] = []
        for sid in plan.start:
            if sid not in self.kids or self.kids[sid].address is not None:
                continue
            why = yield from self._start_kid(sid, restart=True)
            if why is not None:
                for s in reversed(started):
                    yield from self._stop_kid(s)
                yield from self._restart(sid, f"restart failed: {why}")  # counts as another restart (OTP)
                return
            started.append(sid)

    def _op_shutdown(self, reason: str, normal: bool) -> Op:
        yield from self._stop_all_kids()
        self._sv_exit(reason, normal=normal)

    def _op_stop_all(self, reason: str) -> Op:
        yield from self._stop_all_kids()
        return None

    def _stop_all_kids(self) -> Op:
        for cid in reversed(list(self.order)):
            if cid in self.kids:
                yield from self._stop_kid(cid)

    # --- starting and stopping one child ----------------------------------------------------------

    def _add_kid(self, spec: ChildSpec) -> None:
        self.kids[spec.id] = _Kid(spec)
        self.order.append(spec.id)

    def _remove_kid(self, cid: str) -> None:
        self.kids.pop(cid, None)
        if cid in self.order:
            self.order.remove(cid)

    def _start_kid(self, cid: str, restart: bool = False) -> Op:
        """Start one child; returns None on success or the failure reason."""
        kid = self.kids[cid]
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
        result = yield _WaitStart(address, self.spec.start_timeout)
        self._failed_child = result.child if isinstance(result, InitFailed) else None
        if isinstance(result, InitOk):
            kid.address, kid.pid, kid.node, kid.notice = result.address, result.pid, result.node, None
            kid.generation += 1
            if spec.name:
                self.send(self._sv_root, Register(spec.name, result.address, spec.kind, path))
            self._emit("restart" if restart else "start", cid, pid=result.pid, address=result.address)
            self._arm_liveness()
            return None
        if result is TIMEOUT:
            self.send(address, ActorExitRequest())
            why = f"no reply to init within {self.spec.start_timeout:g}s"
        elif isinstance(result, InitFailed):
            why = result.reason
        else:
            why = f"process exited during start ({result.reason})"
        self._emit("start_failed", cid, why, normal=False)
        return why

    def _stop_kid(self, cid: str, reason: str = "shutdown") -> Op:
        kid = self.kids[cid]
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
        if not isinstance(result, _Exit):  # no exit will come (e.g. its host is gone): stop waiting for it
            _thespian.forget_child(self, address)
        exit_ = result if isinstance(result, _Exit) else _Exit("killed (no exit seen)", False)
        if kid.address is not None:
            self._mark_down(kid, exit_)

    def _kill(self, kid: _Kid) -> None:
        if kid.pid and kid.pid != os.getpid() and kid.node == procfs.node_id():  # a pid elsewhere means nothing here
            try:
                os.kill(kid.pid, signal.SIGKILL)
                return
            except ProcessLookupError:
                pass
        self.send(kid.address, ActorExitRequest())

    # --- the operation runner ----------------------------------------------------------------------

    def _enqueue(self, op: Op, done: Callable[[Any, Optional[BaseException]], None] | None = None) -> None:
        self.queue.append(_Pending(op, done or (lambda value, error: self._raise(error))))
        self._pump()

    @staticmethod
    def _raise(error: Optional[BaseException]) -> None:
        """Default completion of internal operations: a bug surfaces as a supervisor crash."""
        if error is not None and not isinstance(error, ActorExited):
            raise error

    def _pump(self) -> None:
        while self.current is None and self.queue and not getattr(self, "_sv_done", False):
            self.current = self.queue.popleft()
            self._step(None)

    def _resume_if(self, predicate: Callable[[Any], bool], value: Any) -> None:
        if self.waiting is not None and predicate(self.waiting):
            self._resume(value)

    def _resume(self, value: Any) -> None:
        self.waiting = None
        self.wait_seq += 1
        self._step(value)
        self._pump()

    def _step(self, value: Any) -> None:
        pending = self.current
        try:
            waited = pending.op.send(value)
        except StopIteration as stop:
            self.current = None
            pending.done(stop.value, None)
            return
        except SupervisionError as exc:
            self.current = None
            pending.done(None, exc)
            return
        self.waiting = waited
        self.wait_seq += 1
        timeout = waited.seconds if isinstance(waited, _Sleep) else waited.timeout
        if timeout is not None:
            self.wakeupAfter(timeout, payload=_Timer(self.wait_seq))

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
        if getattr(self, "_sv_done", False):
            return
        for pending in getattr(self, "queue", ()):
            pending.done(None, ActorExited(self.actor_path, reason))
        if hasattr(self, "queue"):
            self.queue.clear()
        for kid in getattr(self, "kids", {}).values():
            if kid.address is not None:
                self._kill(kid)
        super()._sv_exit(reason, normal)
