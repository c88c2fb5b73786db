"""``dspex.runtime()``: the actor runtime with dspex's own tree on top, its event bus and cancel registry.

    with dspex.runtime(base="local") as rt:
        lm = dspex.LM("openai/gpt-4o-mini")      # finds rt as the innermost open runtime

A :class:`Runtime` is the actor tree (``clients``: the ledger and one actor per LM client; ``models``:
local model servers; ``compile``: compile jobs, on first use), the event bus the dashboard listens to,
and the registry of runs asked to stop. Its state is a :class:`RuntimeState` (made, open, closed). The
client side of this process (request pipelines, response cache, keys, call history) is ``rt.engines``
(``dspex/clients/engines.py``).

Open runtimes form an explicit, process-wide stack (``dspex.clients.host``, not thread-local):
``dspex.LM`` and friends use the innermost one unless given ``runtime=``. When none is open, the first
thing that needs one (``dspex.LM(...)``, ``dspex.configure(...)``) starts the process's default runtime:
local base, closed at interpreter exit (:func:`default_runtime`, the one place that policy lives).
Asking which runtime is current never starts one.
"""

from __future__ import annotations

import atexit
import enum
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import structlog

from supervision import (ActorExited, ActorRef, ActorRuntime, ChildSpec, Kind, NodeInfo, SupervisorRef,
                         SupervisorSpec)
from supervision.errors import Shutdown
from supervision.telemetry import EventBus
from supervision.tcp import free_port

from .clients.budgets import RunBudget
from .clients.client import ClientActor
from .clients.config import LMConfig
from .clients.engines import Engines
from .clients.host import OPEN, active_runtime, current_runtime, open_runtimes
from .clients.ledger import LedgerActor
from .clients.messages import CloseBudget, Flush, LedgerQuery, LedgerReport, OpenBudget
from .clients.prices import Price, check_price, price_for
from .errors import ConfigError
from .local.actor import ModelServer
from .local.models import resolve_model
from .logs import configure_logging
from .config import Settings


def default_cache_dir() -> Path:
    """The response cache's folder when a runtime is given none (``cache_dir`` of ``dspex.Settings``)."""
    return Settings.load().cache_dir


class RuntimeState(enum.Enum):
    """Where a runtime is in its life (as httpx's ``ClientState``). Not ``Lifecycle``: that name is the
    GenServer's state in ``supervision``."""

    UNOPENED = 1  # made, not started: no actor runs, no handle can bind to it
    OPENED = 2  # started (or attached to another process's runtime): the tree runs, handles bind to it
    CLOSED = 3  # closed: its actors are stopped; it cannot be opened again (make a new one)


class Runtime:
    """An :class:`~supervision.ActorRuntime` with dspex's tree, event bus and cancel registry (module docstring)."""

    def __init__(self, base: str = "local", *, name: str = "dspex", cache_dir: str | Path | None = None,
                 prices: Mapping[str, Price] | None = None, log_level: str | None = "warning",
                 settings: Settings | None = None, **runtime_options: Any) -> None:
        self.settings = settings if settings is not None else Settings.load()  # keys, cache folder, prices
        if "cookie" not in runtime_options and "cookie_file" not in runtime_options:  # else the given one wins
            if self.settings.cookie_file is not None:
                runtime_options["cookie_file"] = self.settings.cookie_file
            elif self.settings.cookie is not None:
                runtime_options["cookie"] = self.settings.cookie.get_secret_value()
        if "tls" not in runtime_options and (tls := self.settings.tls()) is not None:
            runtime_options["tls"] = tls
        self.actors = ActorRuntime(base, name, **runtime_options)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.settings.cache_dir
        self.prices = {**{k: check_price(v) for k, v in self.settings.prices.items()},
                       **{k: check_price(v) for k, v in (prices or {}).items()}}
        self.log_level = log_level
        self.state = RuntimeState.UNOPENED
        self.clients: SupervisorRef | None = None  # the ledger and one actor per LM client
        self.models: SupervisorRef | None = None  # local model servers
        self.defaults: dict[str, Any] = {}  # dspex.configure(lm=..., adapter=...) on this runtime
        self.engines = Engines(self.cache_dir, direct=self.actors.is_local, find_client=self.client_ref)
        self._configs: dict[str, LMConfig] = {}
        self._model_ports: dict[str, int] = {}
        self._lock = threading.RLock()
        self._bus = EventBus()  # dspex-level events (evaluation progress) for the dashboard and tests
        self._cancelled_runs: set[str] = set()  # runs asked to stop (rt.cancel_run)
        self._dashboards: list[Any] = []  # served by this runtime, closed with it
        self._kept: dict[str, Any] = {}  # resources kept between calls (kept()), closed with it

    @property
    def base(self) -> str:
        return self.actors.base

    def start(self) -> "Runtime":
        if self.state is not RuntimeState.UNOPENED:
            raise ConfigError(f"this runtime is {self.state.name.lower()}: a runtime is started once "
                              "(make another with dspex.runtime(...))")
        if self.log_level is not None and not structlog.is_configured():
            configure_logging(self.log_level)
        self.actors.start()
        try:
            self.clients = self.actors.start_supervisor(
                SupervisorSpec("rest_for_one", intensity=10, period=10.0),
                [ChildSpec("ledger", LedgerActor, title="ledger")], name="clients")
            # local model servers apart from the clients: a model crash restarts only that model
            self.models = self.actors.start_supervisor(SupervisorSpec("one_for_one", intensity=5, period=30.0),
                                                       name="models")
        except BaseException:
            self.actors.close()
            self.state = RuntimeState.CLOSED
            raise
        self.state = RuntimeState.OPENED
        OPEN.push(self)
        return self

    def dashboard(self, port: int = 0, host: str = "127.0.0.1", runs_dir: str | Path | None = None,
                  allow_remote: bool = False) -> Any:
        """Serve the live dashboard of this runtime (``.url`` has the access token; ``.close()``; closed
        with the runtime too). Binds 127.0.0.1 unless ``allow_remote=True`` and another ``host``."""
        from .dashboard import Dashboard

        board = Dashboard(self, host=host, port=port, runs_dir=runs_dir if runs_dir is not None
                          else self.settings.runs_dir, allow_remote=allow_remote)
        with self._lock:
            self._dashboards.append(board)
        return board

    def kept(self, key: str, make: Callable[[], Any]) -> Any:
        """The resource this runtime keeps under ``key`` between calls, made by ``make()`` on first use; its
        ``close()`` is called when the runtime closes (e.g. the worker pool of ``run_distributed``: its
        processes on the hosts serve every later evaluation, not only the first)."""
        with self._lock:
            if self.state is RuntimeState.CLOSED:
                raise ConfigError("the runtime is closed: use `with dspex.runtime() as rt:`")
            if key not in self._kept:
                self._kept[key] = make()
            return self._kept[key]

    def close(self) -> None:
        with self._lock:
            boards, self._dashboards = list(self._dashboards), []
            kept, self._kept = list(self._kept.values()), {}
        try:
            for board in boards:
                board.close()
            for resource in kept:  # (worker pools: stopped while the actor system still runs)
                resource.close()
        finally:
            OPEN.remove(self)
            self.engines.close()
            self.actors.close()
            self.state = RuntimeState.CLOSED

    def _clients(self) -> SupervisorRef:
        """The ``clients`` supervisor of this open runtime (ConfigError if it is not open)."""
        if self.state is not RuntimeState.OPENED or self.clients is None:
            raise ConfigError(f"the runtime is {'closed' if self.state is RuntimeState.CLOSED else 'not started'}:"
                              " use `with dspex.runtime() as rt:`")
        return self.clients

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- events ------------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for dspex events (e.g. ``EvalProgress``) and the supervision tree's
        lifecycle events; returns an unsubscribe function."""
        unsubscribe_events = self._bus.subscribe(callback)
        unsubscribe_tree = self.actors.subscribe(callback)

        def unsubscribe() -> None:
            unsubscribe_events()
            unsubscribe_tree()

        return unsubscribe

    def publish(self, event: Any) -> None:
        """Hand ``event`` to this process's subscribers (in the calling thread)."""
        self._bus.publish(event)

    @property
    def watched(self) -> bool:
        """Whether anyone subscribed (events that cost something to build are built only then)."""
        return bool(self._bus)

    def cancel_run(self, run: str) -> None:
        """Ask the evaluation or compile ``run`` to stop dispatching (as Ctrl-C does: the partial result is
        kept, its unfinished examples ``EvaluationCancelled``). Used by the dashboard's cancel button."""
        with self._lock:
            self._cancelled_runs.add(run)

    def run_cancelled(self, run: str) -> bool:
        with self._lock:
            return run in self._cancelled_runs

    # --- the tree ----------------------------------------------------------------------------------

    def nodes(self, timeout: float = 1.0) -> list[NodeInfo]:
        """The hosts that joined this runtime (a ``tcp`` leader), each asked now whether it is up: a
        ``supervision.NodeInfo`` per host (address, ``NodeState``, its capabilities); ``[]`` on other bases."""
        return self.actors.nodes(timeout)

    def supervisors(self) -> list[SupervisorRef]:
        """dspex's top supervisors that run now: ``clients``, ``models`` and, once a compile ran, ``compile``."""
        return [sup for sup in (self.clients, self.models) if sup is not None]

    def client_ref(self, cfg: LMConfig, price: Price | None = None) -> ActorRef:
        """The running client actor for ``cfg`` (started on first use; found again after a restart)."""
        clients = self._clients()
        with self._lock:
            known = self._configs.get(cfg.client_key)
            if known is not None and known.limits != cfg.limits:
                raise ConfigError(f"a client for {cfg.client_key} already runs with other limits "
                                  f"(rpm={known.rpm}, tpm={known.tpm}, max_in_flight={known.max_in_flight}, "
                                  f"budget_usd={known.budget_usd}, ...): pass the same limits, or name= a separate client")
            child_id = _child_id(cfg)
            running = {c.id: c for c in clients.which_children()}
            if child_id in running:
                if running[child_id].ref is None:
                    raise ConfigError(f"the client {cfg.client_key} is restarting; retry the request")
                return running[child_id].ref
            price = price if price is not None else price_for(cfg.qualified, self.prices)
            info = clients.start_child(ChildSpec(child_id, ClientActor, args=(cfg, price),
                                                 title=f"client {cfg.qualified}"))
            self._configs[cfg.client_key] = cfg
            return info.ref

    def client_configs(self) -> dict[str, LMConfig]:
        """The settings of each client actor this process started, by client key (no keys in them)."""
        with self._lock:
            return dict(self._configs)

    def local_model_url(self, name: str, n_ctx: int = 2048, threads: int = 2) -> str:
        """Start (once) the supervised server of local model ``name``; its OpenAI-style base URL."""
        self._clients()  # open, or a ConfigError saying so
        if self.models is None:
            raise ConfigError("local models are served by the runtime that runs them, not by one attached "
                              "from another process: pass base_url= of the model's server")
        with self._lock:
            port = self._model_ports.get(name)
            if port is None:
                path = resolve_model(name)
                port = free_port()
                short = Path(name).stem if name.endswith(".gguf") else name
                self.models.start_child(ChildSpec(f"model:{name}", ModelServer, args=(str(path), port, short),
                                                   kwargs={"n_ctx": n_ctx, "threads": threads},
                                                   title=f"model {short}", shutdown=15.0), timeout=180.0)
                self._model_ports[name] = port
            return f"http://127.0.0.1:{port}/v1"

    def usage(self, run: str | None = None) -> LedgerReport:
        """Ledger totals (all clients, per client, per run) once every client has flushed."""
        clients = self._clients()
        self.engines.flush()
        for info in clients.which_children():
            if info.id != "ledger" and info.ref is not None:
                info.ref.call(Flush(), 30.0)
        return clients.child("ledger").call(LedgerQuery(run=run), 30.0)

    def open_budget(self, budget: RunBudget) -> None:
        """Hold run ``budget.run`` and the runs inside it to ``budget`` at admission, in every client actor
        (a compile's budget_usd / budget_tokens; see ``clients/budgets.py``). The ledger first: a client
        that starts later learns the open budgets from it."""
        clients = self._clients()
        clients.child("ledger").call(OpenBudget(budget), 30.0)
        for info in clients.which_children():
            if info.id != "ledger" and info.ref is not None:
                info.ref.call(OpenBudget(budget), 30.0)

    def close_budget(self, run: str) -> None:
        """The run is over: its budget is dropped (a client that exited with it open has nothing to drop)."""
        if self.state is not RuntimeState.OPENED or self.clients is None:
            return  # nothing runs: no budget to drop
        try:
            for info in self.clients.which_children():
                if info.ref is not None:
                    info.ref.call(CloseBudget(run), 30.0)
        except (ActorExited, Shutdown) as exc:
            structlog.get_logger("dspex").warning("close_budget", run=run, error=str(exc))

    # --- other processes -------------------------------------------------------------------------

    def info(self) -> "RuntimeInfo":
        """What another process (an evaluation worker) needs to use this runtime's clients."""
        if self.state is not RuntimeState.OPENED or self.clients is None or self.actors.is_local:
            raise ConfigError("only a started multiproc/tcp runtime can be shared with other processes")
        return RuntimeInfo(self.actors.admin_port, self.actors.root, self.clients.address, self.clients.path,
                           str(self.cache_dir), dict(self.prices))

    @classmethod
    def attach(cls, info: "RuntimeInfo") -> "Runtime":
        """This runtime's clients, seen from another process; ``close`` only drops the connection."""
        rt = cls("multiproc", cache_dir=info.cache_dir, prices=info.prices, log_level=None)
        rt.actors = ActorRuntime.attach(info.admin_port, info.root)
        rt.clients = SupervisorRef(info.clients, info.clients_path, Kind.SUPERVISOR).bind(rt.actors)
        rt.state = RuntimeState.OPENED  # not on the open stack: handles bind to it explicitly (lm.bind(rt))
        return rt


@dataclass(frozen=True)
class RuntimeInfo:
    """Addresses and settings of a running runtime (picklable; no secrets)."""

    admin_port: int
    root: Any
    clients: Any
    clients_path: str
    cache_dir: str
    prices: dict


def _child_id(cfg: LMConfig) -> str:
    return "client:" + cfg.client_key


# --- the process's default runtime: the one place its policy lives ----------------------------------
# When no runtime is open, the first thing that needs one starts this (``current_runtime()``: dspex.LM(...)
# without runtime=, dspex.configure(...), a program run with no lm); asking which runtime is current
# (``existing_runtime()``, ``active_runtime()``) never does. The open-runtime stack is in the clients layer,
# which cannot import this module, so the factory is handed to it here, when dspex is imported.

def default_runtime() -> Runtime:
    """The process's default runtime: local base, named dspex-default, started on first use, closed in
    order at interpreter exit (a user's ``with dspex.runtime(...)`` chooses another)."""
    rt = Runtime("local", name="dspex-default").start()
    atexit.register(rt.close)
    structlog.get_logger("dspex").info("default_runtime_started", base="local",
                                       hint="closed at exit; `with dspex.runtime(...)` chooses another")
    return rt


OPEN.set_default_factory(default_runtime)


def inspect_history(n: int = 1) -> str:
    """Print (and return) the last ``n`` LM calls of this process's current runtime, as DSPy does."""
    calls = current_runtime().engines.history()[-n:] if n > 0 else []
    parts = []
    for call in calls:
        lines = [f"[{call['timestamp'][11:19]}] {call['model']}"
                 + (" (cached)" if call["cached"] else "")]
        lines += [f"{m['role'].upper()}: {m['content']}" for m in call["messages"]]
        lines.append(f"RESPONSE: {call['response']}")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts)
    print(text)
    return text


def runtime(base: str = "local", **options: Any) -> Runtime:
    """A :class:`Runtime` to use as a context manager (``base``: local | multiproc | tcp)."""
    return Runtime(base, **options)


__all__ = ["Runtime", "RuntimeState", "RuntimeInfo", "runtime", "current_runtime", "active_runtime", "open_runtimes",
           "inspect_history", "default_runtime", "default_cache_dir"]
