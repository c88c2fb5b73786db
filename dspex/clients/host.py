"""What an LM handle needs from the runtime it is bound to (a small protocol), and the stack of open
runtimes of this process, so the clients layer never imports the runtime module above it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from supervision import ActorRef

    from .config import LMConfig, Secret
    from .prices import Price


class ClientHost(Protocol):
    """The runtime as a handle sees it (``dspex.Runtime`` implements it)."""

    actors: Any  # the ActorRuntime (``is_local``)

    def client_ref(self, cfg: "LMConfig", price: "Price | None" = None) -> "ActorRef": ...

    def engine(self, cfg: "LMConfig", key: "Secret | None") -> Any: ...

    def flush_reports(self) -> None: ...

    def local_model_url(self, name: str) -> str: ...

    def remember_key(self, token: str, key: "Secret | None") -> None: ...

    def key_for(self, token: str) -> "Secret | None": ...

    def knows_token(self, token: str) -> bool: ...


class _OpenHosts:
    """Open runtimes of this process, innermost last (a runtime pushes itself on start, pops on close)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: list[Any] = []

    def push(self, host: Any) -> None:
        with self._lock:
            self._stack.append(host)

    def remove(self, host: Any) -> None:
        with self._lock:
            if host in self._stack:
                self._stack.remove(host)

    def all(self) -> list[Any]:
        with self._lock:
            return list(self._stack)

    def innermost(self) -> Any:
        with self._lock:
            return self._stack[-1] if self._stack else None


OPEN = _OpenHosts()  # the process's open runtimes: pushed and popped only by Runtime.start / close


def open_runtimes() -> list[Any]:
    """The open runtimes of this process, innermost last."""
    return OPEN.all()


def active_runtime() -> Any:
    """The innermost open runtime of this process, or None."""
    return OPEN.innermost()


def current_runtime() -> Any:
    """The innermost open runtime of this process (ConfigError if none is open)."""
    runtime = active_runtime()
    if runtime is not None:
        return runtime
    raise ConfigError("no dspex runtime is open: wrap your code in `with dspex.runtime() as rt:` "
                      "or pass runtime=rt")


__all__ = ["ClientHost", "open_runtimes", "active_runtime", "current_runtime", "OPEN"]
