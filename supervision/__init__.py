"""supervision: Erlang/OTP supervision on Thespian actors (knows nothing about language models).

    from supervision import ActorRuntime, ChildSpec, SupervisorSpec, GenServer
"""

from .cookie import Cookie
from .errors import (ActorExited, CallFailed, CallTimeout, CookieError, FailedToStartChild, Shutdown, SpecError,
                     SupervisionError, TlsError)
from .gen_server import GenServer, Lifecycle, NoReply
from .membership import NodeInfo, NodeState
from .messages import ChildCounts, ChildInfo, LifecycleEvent, RootFailure
from .ref import ActorRef, SupervisorRef
from .runtime import ActorRuntime
from .specs import AutoShutdown, ChildSpec, Kind, Restart, Strategy, SupervisorSpec
from .tls import TlsConfig

__all__ = [
    "ActorRuntime", "ChildSpec", "SupervisorSpec", "GenServer", "Lifecycle", "NoReply", "ActorRef", "SupervisorRef",
    "ChildInfo", "ChildCounts", "LifecycleEvent", "RootFailure", "Restart", "Strategy", "AutoShutdown", "Kind",
    "SupervisionError", "SpecError", "CallTimeout", "ActorExited", "CallFailed", "FailedToStartChild", "Shutdown",
    "Cookie", "CookieError", "NodeInfo", "NodeState", "TlsConfig", "TlsError",
]
