"""What an LM handle needs from the runtime it is bound to (a small protocol), and the stack of open
runtimes of this process, so the clients layer never imports the runtime module above it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from supervision import ActorRef

    from .config import LMConfig
    from .engines import Engines
    from .prices import Price


class ClientHost(Protocol):
    """The runtime as a handle sees it (``dspex.Runtime`` implements it): the actor tree starts client
    actors and local model servers; everything else a handle needs is in this process's ``engines``."""

    engines: "Engines"  # pipelines, response cache, keys, history (``clients/engines.py``)
    settings: Any  # dspex.Settings: where keys come from

    def client_ref(self, cfg: "LMConfig", price: "Price | None" = None) -> "ActorRef": ...

    def local_model_url(self, name: str) -> str: ...


class _OpenHosts:
    """Open runtimes of this process, innermost last (a runtime pushes itself on start, pops on close),
    and the process's default runtime: started by :func:`current_runtime` when none is open, made by the
    factory ``dspex.runtime`` hands in (its one policy, see ``default_runtime`` there)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # replaced whole under the lock, never changed in place: a reader takes it without the lock (every
        # setting read asks for the innermost runtime, several times an LM call)
        self._stack: tuple[Any, ...] = ()
        self._factory: Callable[[], Any] | None = None
        self._default: Any = None

    def push(self, host: Any) -> None:
        with self._lock:
            self._stack = (*self._stack, host)

    def remove(self, host: Any) -> None:
        with self._lock:
            if host in self._stack:
                at = self._stack.index(host)
                self._stack = self._stack[:at] + self._stack[at + 1:]
            if host is self._default:
                self._default = None

    def set_default_factory(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def started_default(self) -> Any:
        """The default runtime if it has been started (never starts it)."""
        return self._default

    def default(self) -> Any:
        """The process's default runtime, started on first use (None if no factory is set)."""
        with self._lock:
            if self._default is None and self._factory is not None:
                self._default = self._factory()
            return self._default

    def all(self) -> list[Any]:
        return list(self._stack)

    def innermost(self) -> Any:
        stack = self._stack
        return stack[-1] if stack else None


OPEN = _OpenHosts()  # the process's open runtimes: pushed and popped only by Runtime.start / close


def open_runtimes() -> list[Any]:
    """The open runtimes of this process, innermost last."""
    return OPEN.all()


def active_runtime() -> Any:
    """The innermost open runtime of this process, or None."""
    return OPEN.innermost()


def existing_runtime() -> Any:
    """The innermost open runtime, else the default one if it already runs; None otherwise (starts nothing)."""
    return active_runtime() or OPEN.started_default()


def current_runtime() -> Any:
    """The innermost open runtime of this process; with none open, the process's default runtime
    (local base, started now, closed at exit), as DSPy users expect line 1 of a tutorial to work."""
    runtime = active_runtime() or OPEN.default()
    if runtime is not None:
        return runtime
    raise ConfigError("no dspex runtime is open: wrap your code in `with dspex.runtime() as rt:` "
                      "or pass runtime=rt")


__all__ = ["ClientHost", "open_runtimes", "active_runtime", "existing_runtime", "current_runtime", "OPEN"]
