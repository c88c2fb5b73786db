"""The one place that adapts Thespian's TCP transport: bind actors to one interface, not 0.0.0.0.

Thespian binds its admin and every actor on all interfaces and accepts unauthenticated pickles:
anyone who reaches a port can run code. With ``SUPERVISION_BIND_HOST`` set (the runtime sets it to
127.0.0.1 unless told otherwise), every socket binds to that address instead. Forked admin and
actor processes inherit both the environment and this patch.
"""

from __future__ import annotations

import os

from thespian.system.transport import IPBase

BIND_ENV = "SUPERVISION_BIND_HOST"
_original_init = IPBase.IPActorAddress.__init__


def _init(self, af, socktype, proto, baseaddr=None, port=0, external=False):  # type: ignore[no-untyped-def]
    _original_init(self, af, socktype, proto, baseaddr, port, external)
    host = os.environ.get(BIND_ENV)
    if host and self.bindname and self.bindname[0] in ("", "0.0.0.0"):
        self.bindname = (host,) + tuple(self.bindname[1:])


def install() -> None:
    """Idempotent; called by ActorRuntime before any TCP actor system starts."""
    if IPBase.IPActorAddress.__init__ is not _init:
        IPBase.IPActorAddress.__init__ = _init
