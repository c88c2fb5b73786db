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
        if isinstance(request, WhereIs):
            return self.registry.get(request.name)
        if isinstance(request, IsAlive):
            return self.dead.get(str(request.address))
        if isinstance(request, DrainEvents):
            drained = list(self.events)
            self.events.clear()
            return drained
        if isinstance(request, GetFailures):
            return list(self.failures)
        if isinstance(request, StartTop):
            if request.name in self.registry or request.name in self.state.kids:
                raise SpecError("name", f"{request.name!r} is already registered", "choose another name")
            spec = ChildSpec(id=request.name, start=request.spec, children=request.children,
                             restart=Restart.TEMPORARY, name=request.name)
            return super().handle_call(StartChild(spec))
        return super().handle_call(request)

    def handle_other(self, message: Any) -> None:
        if isinstance(message, Register):
            self.registry[message.name] = Registered(message.name, message.address, message.kind, message.path)
        elif isinstance(message, Unregister):
            current = self.registry.get(message.name)
            if current is not None and current.address == message.address:
                del self.registry[message.name]
        elif isinstance(message, ActorEvent):
            self.events.append(message)
        elif isinstance(message, LifecycleEvent):
            self.events.append(message)
            if message.kind == "exit" and message.address:
                self.dead[message.address] = message.reason
                if len(self.dead) > MAX_DEAD:
                    self.dead.popitem(last=False)
                if message.supervisor == self.actor_path and not message.normal:
                    self.failures.append(RootFailure(message.child, message.reason, message.at))
        else:
            super().handle_other(message)
