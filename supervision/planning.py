"""Pure decisions of a supervisor: restart intensity, restart plans, auto shutdown.

Supervisor actors only execute what these functions decide; tests drive them with an injected
clock and compare them with the OTP manual's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .specs import AutoShutdown, Restart, Strategy


def record_restart(history: Sequence[float], now: float, intensity: int, period: float) -> tuple[tuple[float, ...], bool]:
    """Add a restart at ``now`` to the supervisor's history (one list per supervisor, as in OTP).

    Returns the pruned history (restarts within the last ``period`` seconds, ``now`` included) and
    whether the intensity is exceeded, i.e. more than ``intensity`` restarts in ``period``.
    """
    kept = tuple(t for t in history if now - t < period) + (now,)
    return kept, len(kept) > intensity


def should_restart(restart: Restart, normal_exit: bool) -> bool:
    """OTP restart types: permanent always, transient after an abnormal exit, temporary never."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return not normal_exit
    return False


@dataclass(frozen=True)
class RestartPlan:
    """Children to stop (in this order: reverse start order) then to start (in start order)."""

    stop: tuple[str, ...]
    start: tuple[str, ...]


def restart_plan(strategy: Strategy, order: Sequence[str], running: Iterable[str], failed: str,
                 temporary: Iterable[str] = ()) -> RestartPlan:
    """What to do when ``failed`` (already down) must be restarted.

    ``order`` is the start order of all children with a spec, ``running`` those alive now,
    ``temporary`` the ids never to be restarted (they are stopped and dropped when a sibling's
    failure takes them down, as in OTP).
    """
    running = set(running)
    temporary = set(temporary)
    if strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
        return RestartPlan(stop=(), start=(failed,))
    if strategy is Strategy.ONE_FOR_ALL:
        affected = list(order)
    else:  # rest_for_one
        affected = list(order[order.index(failed):])
    stop = tuple(c for c in reversed(affected) if c != failed and c in running)
    start = tuple(c for c in affected if c == failed or c not in temporary)
    return RestartPlan(stop=stop, start=start)


def should_auto_shutdown(mode: AutoShutdown, exited_significant: bool, significant_running: int) -> bool:
    """Whether a significant child's (final, not restarted) exit shuts the supervisor down."""
    if not exited_significant or mode is AutoShutdown.NEVER:
        return False
    if mode is AutoShutdown.ANY_SIGNIFICANT:
        return True
    return significant_running == 0
