"""Child and supervisor specifications: small frozen values, validated when constructed.

They follow OTP's ``supervisor`` child_spec / sup_flags (same names, same defaults) so the
Erlang manual applies. Anything invalid raises :class:`~supervision.errors.SpecError`
naming the field and the fix, before any actor is started.
"""

from __future__ import annotations

import enum
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from .errors import SpecError


class Restart(str, enum.Enum):
    """When a child is restarted after it exits (OTP restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never; its spec is removed


class Strategy(str, enum.Enum):
    """Which siblings are restarted with a failed child (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class AutoShutdown(str, enum.Enum):
    """Whether significant children's exits shut the supervisor down (OTP 24+)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class Kind(str, enum.Enum):
    """What a child is: a worker (a GenServer) or a supervisor of its own children (OTP's child type)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


BRUTAL_KILL = "brutal_kill"
INFINITY = "infinity"
ShutdownSetting = Union[float, str]  # seconds, "brutal_kill" or "infinity"

_UNSET: Any = object()


def _enum(enum_cls: type[enum.Enum], value: Any, field_name: str) -> Any:
    try:
        return enum_cls(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_cls)  # type: ignore[attr-defined]
        raise SpecError(field_name, f"unknown value {value!r}", f"use one of {allowed}") from None


def _non_negative_number(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise SpecError(field_name, f"must be a number, got {value!r}")
    if value < 0:
        raise SpecError(field_name, f"must be >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SupervisorSpec:
    """Supervisor flags: restart strategy, restart intensity, auto shutdown, optional backoff.

    More than ``intensity`` restarts within ``period`` seconds make the supervisor stop all its
    children and exit abnormally (escalation). ``min_backoff``/``max_backoff`` (seconds) delay the
    n-th restart in a window by ``min_backoff * 2**n`` capped at ``max_backoff``, with ``jitter``.
    """

    strategy: Strategy | str = Strategy.ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER
    min_backoff: float | None = None
    max_backoff: float | None = None
    jitter: float = 0.2
    start_timeout: float = 60.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "strategy", _enum(Strategy, self.strategy, "SupervisorSpec.strategy"))
        set_(self, "auto_shutdown", _enum(AutoShutdown, self.auto_shutdown, "SupervisorSpec.auto_shutdown"))
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int) or self.intensity < 0:
            raise SpecError("SupervisorSpec.intensity", f"must be an int >= 0, got {self.intensity!r}",
                            "OTP's default is 1")
        period = _non_negative_number(self.period, "SupervisorSpec.period")
        if period == 0:
            raise SpecError("SupervisorSpec.period", "must be > 0 seconds", "OTP's default is 5")
        set_(self, "period", period)
        set_(self, "jitter", _non_negative_number(self.jitter, "SupervisorSpec.jitter"))
        set_(self, "start_timeout", _non_negative_number(self.start_timeout, "SupervisorSpec.start_timeout"))
        if (self.min_backoff is None) != (self.max_backoff is None):
            raise SpecError("SupervisorSpec.min_backoff", "min_backoff and max_backoff go together",
                            "give both or neither")
        if self.min_backoff is not None:
            lo = _non_negative_number(self.min_backoff, "SupervisorSpec.min_backoff")
            hi = _non_negative_number(self.max_backoff, "SupervisorSpec.max_backoff")
            if hi < lo:
                raise SpecError("SupervisorSpec.max_backoff", f"{hi} is below min_backoff {lo}")
            set_(self, "min_backoff", lo)
            set_(self, "max_backoff", hi)


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child.

    ``start`` is a :class:`~supervision.GenServer` subclass (or its ``"module:Class"`` path), or a
    :class:`SupervisorSpec` for a nested supervisor whose own children are given in ``children``.
    ``shutdown`` is seconds for ``terminate`` before the child is killed, ``"brutal_kill"``, or
    ``"infinity"`` (the default for supervisors). ``name`` registers the running child in the
    runtime's registry (``rt.whereis(name)``). ``requirements`` places a worker on an actor system
    of a convention whose capabilities include every ``key: value`` given (another host, see
    :class:`supervision.node.Node`); without it the child runs on the supervisor's own system.
    """

    id: str
    start: Any
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart | str = Restart.PERMANENT
    shutdown: ShutdownSetting = _UNSET
    significant: bool = False
    name: str | None = None
    children: Sequence["ChildSpec"] = ()
    title: str | None = None
    requirements: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.id, str) or not self.id:
            raise SpecError("ChildSpec.id", f"must be a non-empty string, got {self.id!r}")
        set_(self, "restart", _enum(Restart, self.restart, f"ChildSpec({self.id!r}).restart"))
        if not isinstance(self.args, tuple):
            set_(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping):
            raise SpecError(f"ChildSpec({self.id!r}).kwargs", f"must be a mapping, got {type(self.kwargs).__name__}")
        set_(self, "kwargs", dict(self.kwargs))
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise SpecError(f"ChildSpec({self.id!r}).name", f"must be a non-empty string or None, got {self.name!r}")
        if not isinstance(self.significant, bool):
            raise SpecError(f"ChildSpec({self.id!r}).significant", "must be True or False")
        if self.significant and self.restart is Restart.PERMANENT:
            raise SpecError(f"ChildSpec({self.id!r}).significant",
                            "a permanent child cannot be significant", "make it transient or temporary (as in OTP)")
        is_sup = isinstance(self.start, SupervisorSpec)
        if not is_sup:
            _check_actor_class(self.start, f"ChildSpec({self.id!r}).start")
            if self.children:
                raise SpecError(f"ChildSpec({self.id!r}).children", "only a nested supervisor has children",
                                "pass start=SupervisorSpec(...) or drop children")
        else:
            children = tuple(self.children)
            for child in children:
                if not isinstance(child, ChildSpec):
                    raise SpecError(f"ChildSpec({self.id!r}).children",
                                    f"expected ChildSpec items, got {type(child).__name__}")
            validate_children(self.start, children, where=f"ChildSpec({self.id!r}).children")
            set_(self, "children", children)
        if self.requirements is not None:
            if not isinstance(self.requirements, Mapping) or not all(isinstance(k, str) for k in self.requirements):
                raise SpecError(f"ChildSpec({self.id!r}).requirements", "must be a mapping of capability names to values")
            if is_sup:
                raise SpecError(f"ChildSpec({self.id!r}).requirements", "only workers can be placed on other systems",
                                "keep supervisors with their parent and place their workers")
            set_(self, "requirements", dict(self.requirements))
        if self.shutdown is _UNSET:
            set_(self, "shutdown", INFINITY if is_sup else 5.0)
        elif self.shutdown not in (BRUTAL_KILL, INFINITY):
            set_(self, "shutdown", _non_negative_number(self.shutdown, f"ChildSpec({self.id!r}).shutdown"))

    @property
    def kind(self) -> Kind:
        return Kind.SUPERVISOR if isinstance(self.start, SupervisorSpec) else Kind.WORKER

    def start_path(self) -> str:
        """The ``module:Class`` path of the actor class (supervisors: the supervisor actor)."""
        if isinstance(self.start, SupervisorSpec):
            return "supervision.supervisor:SupervisorActor"
        if isinstance(self.start, str):
            return self.start
        return f"{self.start.__module__}:{self.start.__qualname__}"


def is_actor_class(obj: Any) -> bool:
    """A GenServer subclass (recognised by the marker GenServer sets, so specs need not import it)."""
    return isinstance(obj, type) and getattr(obj, "_sv_gen_server", False) is True


def _check_actor_class(start: Any, field_name: str) -> None:
    if isinstance(start, str):
        if ":" not in start:
            raise SpecError(field_name, f"{start!r} is not a 'module:Class' path")
        return
    if not is_actor_class(start):
        raise SpecError(field_name, f"{start!r} is not a GenServer subclass",
                        "subclass supervision.GenServer, or pass a SupervisorSpec for a nested supervisor")
    if "<locals>" in start.__qualname__:
        raise SpecError(field_name, f"{start.__qualname__} is defined inside a function",
                        "define actor classes at module level so they can be imported by path")


def resolve_actor_class(path: str) -> type:
    """Import ``module:Class``; raise SpecError with the reason when that is impossible."""
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SpecError("ChildSpec.start", f"cannot import {path!r}: {exc}",
                        "the class must live in an importable module") from exc
    if not is_actor_class(obj):
        raise SpecError("ChildSpec.start", f"{path!r} is not a GenServer subclass")
    return obj


def validate_children(spec: SupervisorSpec, children: Sequence[ChildSpec], where: str = "children") -> None:
    """Checks that need the whole child list: unique ids, simple_one_for_one template, significance."""
    seen: set[str] = set()
    for child in children:
        if child.id in seen:
            raise SpecError(where, f"duplicate child id {child.id!r}", "child ids must be unique within a supervisor")
        seen.add(child.id)
        if child.significant and spec.auto_shutdown is AutoShutdown.NEVER:
            raise SpecError(f"ChildSpec({child.id!r}).significant",
                            "significant children need auto_shutdown 'any_significant' or 'all_significant'")
    if spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(children) != 1:
        raise SpecError(where, f"simple_one_for_one takes exactly one template child, got {len(children)}",
                        "start instances later with sup.start_child(kwargs)")


def walk_names(children: Sequence[ChildSpec]) -> list[str]:
    """All registry names in a tree of child specs, depth first."""
    names: list[str] = []
    for child in children:
        if child.name:
            names.append(child.name)
        names.extend(walk_names(child.children))
    return names


def walk_classes(children: Sequence[ChildSpec]) -> list[tuple[str, Any]]:
    """(child id, start) for every worker in a tree of specs, depth first."""
    found: list[tuple[str, Any]] = []
    for child in children:
        if child.kind is Kind.WORKER:
            found.append((child.id, child.start))
        found.extend(walk_classes(child.children))
    return found
