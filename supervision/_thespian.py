"""The one place that adapts Thespian: two small, behaviour-preserving patches.

1. Bind actors to one interface, not 0.0.0.0. Thespian binds its admin and every actor on all
   interfaces and accepts unauthenticated pickles: anyone who reaches a port can run code. With
   ``SUPERVISION_BIND_HOST`` set (the runtime sets it to 127.0.0.1 unless told otherwise), every
   socket binds to that address instead. Forked processes inherit the environment and the patch.
2. simpleSystemBase looks for expired timers before every message it delivers, through a fold of
   lambdas that cost ~15 µs per pending timer (Thespian cannot cancel timers, so supervisors' start
   timeouts stay pending for a minute): the same partition in one plain pass.
"""

from __future__ import annotations

import os

from thespian.system import simpleSystemBase
from thespian.system.transport import IPBase

BIND_ENV = "SUPERVISION_BIND_HOST"
_original_init = IPBase.IPActorAddress.__init__


def _init(self, af, socktype, proto, baseaddr=None, port=0, external=False):  # type: ignore[no-untyped-def]
    _original_init(self, af, socktype, proto, baseaddr, port, external)
    host = os.environ.get(BIND_ENV)
    if host and self.bindname and self.bindname[0] in ("", "0.0.0.0"):
        self.bindname = (host,) + tuple(self.bindname[1:])


def _pop_expired_wakeups(self, ct):  # type: ignore[no-untyped-def]
    """Thespian's WakeupManager._pop_expired_wakeups: (target, ExpirationTimer, payload) entries due at ``ct``."""
    expired, pending = [], []
    for entry in self._wakeUps:
        quit_at = entry[1]._time_to_quit
        (expired if quit_at is not None and ct >= quit_at else pending).append(entry)
    self._wakeUps = pending
    return expired


def install() -> None:
    """Idempotent; called by ActorRuntime before any actor system starts."""
    if IPBase.IPActorAddress.__init__ is not _init:
        IPBase.IPActorAddress.__init__ = _init
    simpleSystemBase.WakeupManager._pop_expired_wakeups = _pop_expired_wakeups
