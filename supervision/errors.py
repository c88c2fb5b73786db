"""The one error tree of ``supervision``.

::

    SupervisionError                 anything this package raises on purpose
    ├── SpecError                    a ChildSpec / SupervisorSpec / start request is invalid
    ├── CallTimeout                  a call got no reply in time
    ├── ActorExited                  the called actor is not running (exited, crashed, unknown)
    ├── CallFailed                   the handler raised; carries the remote type and message
    ├── FailedToStartChild           a child's init raised or its process could not start
    ├── Shutdown                     the runtime is shut down or shutting down
    └── CookieError                  the cluster cookie is missing, unreadable, too open or too short
"""

from __future__ import annotations


class SupervisionError(Exception):
    """Base of every error raised on purpose by ``supervision``."""


class SpecError(SupervisionError, ValueError):
    """A spec or start request is invalid; the message names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class CallTimeout(SupervisionError, TimeoutError):
    """No reply arrived within the timeout. The actor may still be working on it."""

    def __init__(self, target: str, request: object, timeout: float, detail: str = "") -> None:
        self.target = target
        self.timeout = timeout
        msg = f"call to {target} got no reply within {timeout:g}s (request type {type(request).__name__})"
        if detail:
            msg += f"; {detail}"
        super().__init__(msg)


class ActorExited(SupervisionError):
    """The target actor is not running: it exited, crashed, or never existed."""

    def __init__(self, target: str, reason: str = "not running") -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"actor {target} has exited ({reason})")


class CallFailed(SupervisionError):
    """The remote handler raised. ``remote_type`` and ``remote_message`` describe the remote error;
    the actor exited abnormally and its supervisor decides what happens next."""

    def __init__(self, target: str, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        self.target = target
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(f"call to {target} failed: {remote_type}: {remote_message}")


class FailedToStartChild(SupervisionError):
    """A child could not be started; the already started siblings were stopped in reverse order."""

    def __init__(self, id: str, reason: str) -> None:  # noqa: A002 - OTP's vocabulary
        self.id = id
        self.reason = reason
        super().__init__(f"child {id!r} failed to start: {reason}")


class Shutdown(SupervisionError):
    """The runtime is closed (or closing): no more calls can be made through it."""


class CookieError(SupervisionError):
    """The cluster cookie cannot be used; the message says what to fix (never shows the secret)."""


class TlsError(SupervisionError):
    """The TLS setting cannot be used (a file missing, a key that is not the certificate's); the message
    says what to fix."""


def _reduce(self: Exception):
    return (_rebuild, (type(self), self.__dict__.copy(), self.args))


def _rebuild(cls: type, state: dict, args: tuple) -> Exception:
    """Rebuild an error with a custom ``__init__`` after pickling (errors cross process boundaries)."""
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


for _cls in (SpecError, CallTimeout, ActorExited, CallFailed, FailedToStartChild):
    _cls.__reduce__ = _reduce
