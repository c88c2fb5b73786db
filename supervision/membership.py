"""Who is in a convention, and whether each member answers now.

Thespian's own list of members changes only when a member registers or its registration lapses (minutes
after a host is lost), so it cannot say whether a host is up. :func:`probe` asks the leader for its list,
then every member's admin for its status, all at once, each through a mailbox of its own; a member that does not
answer within ``timeout`` is ``UNREACHABLE``. One round trip per member, and only when asked: no
background traffic.
"""

from __future__ import annotations

import enum
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

from thespian.system.messages.status import Thespian_StatusReq, Thespian_SystemStatus

PROBE_TIMEOUT = 1.0  # seconds a member has to answer before it is listed as unreachable
PROBE_THREADS = 32  # members asked at once


class NodeState(enum.Enum):
    """What a member's admin did when asked for its status."""

    UP = "up"  # answered
    STOPPING = "stopping"  # answered that its system is shutting down
    UNREACHABLE = "unreachable"  # registered with the leader, but no answer in time


@dataclass(frozen=True)
class NodeInfo:
    """One member of a convention, as probed (see :func:`probe`)."""

    address: str  # its admin, "ip:port"
    state: NodeState
    capabilities: Mapping[str, str] = field(default_factory=dict)  # as it declared them (values as text)
    answered_in: float | None = None  # seconds its status took to come back (None: no answer)


def _ask_status(system: Any, address: Any, timeout: float) -> tuple[Thespian_SystemStatus, float] | None:
    """One member's status and how long it took, through a mailbox of its own (a send to a stopped host
    waits; the others must not wait behind it), or None after ``timeout``."""
    with system.private() as mailbox:  # a reply that comes after the deadline dies with this mailbox
        sent = time.monotonic()
        reply = mailbox.ask(address, Thespian_StatusReq(), timeout)
        took = time.monotonic() - sent
    return (reply, took) if isinstance(reply, Thespian_SystemStatus) else None


def address_text(address: Any) -> str:
    """``ip:port`` of a Thespian TCP address (its repr otherwise)."""
    sockname = getattr(getattr(address, "addressDetails", None), "sockname", None)
    return f"{sockname[0]}:{sockname[1]}" if sockname else str(address)


def probe(system: Any, timeout: float = PROBE_TIMEOUT) -> list[NodeInfo]:
    """The members of the convention ``system``'s admin leads, each asked for its status (sorted by address).
    ``system``: an ``ActorSystem`` (not one of its private contexts: each question gets a context of its own)."""
    with system.private() as mailbox:
        status = mailbox.ask(system._systemBase.adminAddr, Thespian_StatusReq(), 10.0)
    members = [address for address, _valid in getattr(status, "conventionAttendees", None) or []]
    if not members:
        return []
    with ThreadPoolExecutor(max_workers=min(PROBE_THREADS, len(members))) as pool:
        answers = dict(zip(map(address_text, members), pool.map(lambda a: _ask_status(system, a, timeout), members)))
    infos = []
    for address, answer in answers.items():
        if answer is None:
            infos.append(NodeInfo(address, NodeState.UNREACHABLE))
            continue
        reply, took = answer
        caps = {str(k): str(v) for k, v in (reply.capabilities or {}).items() if not str(k).startswith("Thespian")}
        state = NodeState.STOPPING if reply.inShutdown else NodeState.UP
        infos.append(NodeInfo(address, state, caps, round(took, 4)))
    return sorted(infos, key=lambda info: info.address)
