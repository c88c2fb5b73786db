"""Handles to running actors: cheap, picklable values bound to the runtime that made them."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Protocol

from .errors import Shutdown, SpecError
from .messages import (ChildCounts, ChildInfo, CountChildren, DeleteChild, RestartChild, StartChild, TerminateChild,
                       WhichChildren)
from .specs import ChildSpec, Kind

DEFAULT_TIMEOUT = 5.0


class Caller(Protocol):
    """What a ref needs from its runtime: blocking calls and fire-and-forget casts."""

    def call(self, address: Any, request: Any, timeout: float, *, patience: float = 0.0) -> Any: ...

    def cast(self, address: Any, message: Any) -> None: ...

    def call_future(self, address: Any, request: Any, timeout: float) -> Any: ...

    def check_spec(self, specs: Any) -> None: ...


class ActorRef:
    """Address of one actor incarnation. A restarted child has a new ref (as a new pid in OTP).

    ``call`` raises CallTimeout / ActorExited / CallFailed; ``cast`` never raises for a dead actor.
    Pickling keeps the address and path and drops the runtime binding.
    """

    __slots__ = ("address", "path", "kind", "_caller")

    def __init__(self, address: Any, path: str, kind: Kind = Kind.WORKER, caller: Caller | None = None) -> None:
        self.address = address
        self.path = path
        self.kind = kind
        self._caller = caller

    def bind(self, caller: Caller) -> "ActorRef":
        cls = SupervisorRef if self.kind is Kind.SUPERVISOR else ActorRef
        return cls(self.address, self.path, self.kind, caller)

    def _need_caller(self) -> Caller:
        if self._caller is None:
            raise Shutdown(f"{self!r} is not bound to a running ActorRuntime (it was pickled or its runtime closed)")
        return self._caller

    def call(self, request: Any, timeout: float = DEFAULT_TIMEOUT, *, patience: float = 0.0) -> Any:
        """Send ``request`` to ``handle_call`` and wait for the reply. ``patience``: seconds the reply may take
        by design (a long poll): whether the actor lives is not asked before then."""
        return self._need_caller().call(self.address, request, timeout, patience=patience)

    def cast(self, message: Any) -> None:
        """Send ``message`` to ``handle_cast``; no reply, no error if the actor is gone."""
        self._need_caller().cast(self.address, message)

    def call_future(self, request: Any, timeout: float = DEFAULT_TIMEOUT) -> "concurrent.futures.Future":
        """``call`` without waiting: a future of the reply (it raises what ``call`` would). No thread waits
        for it, so thousands may be pending (``asyncio.wrap_future`` awaits one on an event loop)."""
        return self._need_caller().call_future(self.address, request, timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and self.address == other.address

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} @ {self.address}>"

    def __getstate__(self) -> tuple:
        return (self.address, self.path, self.kind)

    def __setstate__(self, state: tuple) -> None:
        self.address, self.path, self.kind = state
        self._caller = None


class SupervisorRef(ActorRef):
    """A ref to a supervisor, with OTP's supervisor API."""

    __slots__ = ()

    def _rebind(self, info: ChildInfo) -> ChildInfo:
        if info.ref is not None:
            return ChildInfo(info.id, info.ref.bind(self._need_caller()), info.restart, info.kind)
        return info

    def which_children(self, timeout: float = DEFAULT_TIMEOUT) -> list:
        """[ChildInfo(id, ref | None, restart, kind)] in start order."""
        return [self._rebind(i) for i in self.call(WhichChildren(), timeout)]

    def count_children(self, timeout: float = DEFAULT_TIMEOUT) -> ChildCounts:
        return self.call(CountChildren(), timeout)

    def child(self, id: str, timeout: float = DEFAULT_TIMEOUT) -> ActorRef | None:  # noqa: A002
        """The running child ``id`` (None while it is not running)."""
        for info in self.which_children(timeout):
            if info.id == id:
                return info.ref
        raise SpecError("id", f"supervisor {self.path} has no child {id!r}", "see which_children() for the ids")

    def start_child(self, spec: ChildSpec | dict | None = None, *, args: tuple = (), kwargs: dict | None = None,
                    timeout: float = 30.0) -> Any:
        """Start a child from a ChildSpec (or, for simple_one_for_one, from the template with extra
        ``args``/``kwargs``; a dict as first argument is taken as kwargs). Returns its ChildInfo."""
        if isinstance(spec, dict):
            spec, kwargs = None, {**spec, **(kwargs or {})}
        if spec is not None:
            self._need_caller().check_spec([spec])
        return self._rebind(self.call(StartChild(spec, tuple(args), dict(kwargs or {})), timeout))

    def terminate_child(self, id: str, timeout: float = 60.0) -> None:  # noqa: A002
        self.call(TerminateChild(id), timeout)

    def restart_child(self, id: str, timeout: float = 30.0) -> Any:  # noqa: A002
        return self._rebind(self.call(RestartChild(id), timeout))

    def delete_child(self, id: str, timeout: float = DEFAULT_TIMEOUT) -> None:  # noqa: A002
        self.call(DeleteChild(id), timeout)
