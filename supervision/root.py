"""The runtime's root supervisor: parent of every top-level supervisor, registry, event buffer.

Top-level supervisors are temporary children: the root never restarts them; an abnormal exit
(escalation) is recorded in ``failures`` and makes later calls into that supervisor raise.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from .errors import SpecError
from .messages import (ActorEvent, DrainEvents, GetFailures, IsAlive, LifecycleEvent, Register, Registered, RootFailure,
                       StartChild, StartTop, Unregister, WhereIs)
from .specs import ChildSpec, Restart
from .supervisor import SupervisorActor

MAX_EVENTS = 10_000
MAX_DEAD = 50_000


class RootSupervisor(SupervisorActor):
    """One per runtime (a Thespian global name), created by ActorRuntime only."""

    def _sv_setup(self, msg: Any, sender: Any) -> None:
        super()._sv_setup(msg, sender)
        self._sv_root = self.myAddress
        self.registry: dict[str, Registered] = {}
        self.events: deque[LifecycleEvent | ActorEvent] = deque(maxlen=MAX_EVENTS)
        self.failures: list[RootFailure] = []
        self.dead: OrderedDict[str, str] = OrderedDict()

    def handle_call(self, request: Any) -> Any:
        # Registry and event requests never wait behind a start or stop in progress.
        match request:
            case WhereIs(name=name):
                return self.registry.get(name)
            case IsAlive(address=address):
                return self.dead.get(str(address))
            case DrainEvents():
                drained = list(self.events)
                self.events.clear()
                return drained
            case GetFailures():
                return list(self.failures)
            case StartTop(spec=spec, children=children, name=name):
                if name in self.registry or name in self.state.kids:
                    raise SpecError("name", f"{name!r} is already registered", "choose another name")
                top = ChildSpec(id=name, start=spec, children=children, restart=Restart.TEMPORARY, name=name)
                return super().handle_call(StartChild(top))
            case _:
                return super().handle_call(request)

    def handle_other(self, message: Any) -> None:
        match message:
            case Register(name=name, address=address, kind=kind, path=path):
                self.registry[name] = Registered(name, address, kind, path)
            case Unregister(name=name, address=address):
                current = self.registry.get(name)
                if current is not None and current.address == address:
                    del self.registry[name]
            case ActorEvent():
                self.events.append(message)
            case LifecycleEvent():
                self.events.append(message)
                if message.kind == "exit" and message.address:
                    self._record_exit(message)
            case _:
                super().handle_other(message)

    def _record_exit(self, event: LifecycleEvent) -> None:
        """Remember why the actor at ``event.address`` exited (IsAlive), and a top-level supervisor's
        abnormal exit as a failure."""
        self.dead[event.address] = event.reason
        if len(self.dead) > MAX_DEAD:
            self.dead.popitem(last=False)
        if event.supervisor == self.actor_path and not event.normal:
            self.failures.append(RootFailure(event.child, event.reason, event.at))
