"""``dspex.runtime()``: the actor runtime with dspex's own tree (clients and their ledger) on top.

    with dspex.runtime(base="local") as rt:
        lm = dspex.LM("openai/gpt-4o-mini")      # finds rt as the innermost open runtime

Open runtimes form an explicit, process-wide stack (``dspex.clients.host``, not thread-local):
``dspex.LM`` and friends use the innermost one unless given ``runtime=``. Nothing starts implicitly:
without an open runtime they raise :class:`~dspex.errors.ConfigError` saying how to open one.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import structlog

from supervision import ActorExited, ActorRef, ActorRuntime, ChildSpec, Kind, SupervisorRef, SupervisorSpec
from supervision.errors import Shutdown
from supervision.telemetry import EventBus
from supervision.tcp import free_port

from .clients.admissions import Admissions, Reports
from .clients.cache import ResponseCache
from .clients.client import ClientActor
from .clients.config import LMConfig, Secret
from .clients.host import OPEN, active_runtime, current_runtime, open_runtimes
from .clients.ledger import LedgerActor
from .clients.budgets import RunBudget
from .clients.messages import CloseBudget, Flush, LedgerQuery, LedgerReport, OpenBudget
from .clients.prices import Price, check_price, price_for
from .clients.transport import Transport
from .errors import ConfigError
from .local.actor import ModelServer
from .local.models import resolve_model
from .logs import configure_logging
from .settings import Settings


HISTORY = 200  # LM calls a runtime remembers for inspect_history (bounded: a long run does not grow memory)


def default_cache_dir() -> Path:
    """The response cache's folder when a runtime is given none (``cache_dir`` of ``dspex.Settings``)."""
    return Settings.load().cache_dir


@dataclass
class Engine:
    """What one process needs to talk to one client's provider: an HTTP pool and the response cache."""

    transport: Transport
    cache: ResponseCache
    admissions: Admissions = field(default_factory=Admissions)  # coalesced lease requests (process bases)
    reports: Reports = field(default_factory=Reports)  # batched success reports (process bases)


class Runtime:
    """An :class:`~supervision.ActorRuntime` plus the ``clients`` supervisor (ledger + one actor per client)."""

    def __init__(self, base: str = "local", *, name: str = "dspex", cache_dir: str | Path | None = None,
                 prices: Mapping[str, Price] | None = None, log_level: str | None = "warning",
                 settings: Settings | None = None, **runtime_options: Any) -> None:
        self.settings = settings if settings is not None else Settings.load()  # keys, cache folder, prices
        self.actors = ActorRuntime(base, name, **runtime_options)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.settings.cache_dir
        self.prices = {**{k: check_price(v) for k, v in self.settings.prices.items()},
                       **{k: check_price(v) for k, v in (prices or {}).items()}}
        self.log_level = log_level
        self.clients: SupervisorRef | None = None
        self.models: SupervisorRef | None = None
        self._compile: SupervisorRef | None = None
        self.defaults: dict[str, Any] = {}  # dspex.configure(lm=..., adapter=...) on this runtime
        self._history: deque[dict] = deque(maxlen=HISTORY)  # the last LM calls made in this process
        self._configs: dict[str, LMConfig] = {}
        self._engines: dict[tuple, Engine] = {}
        self._cache: ResponseCache | None = None  # one per process, opened on first use
        self._model_ports: dict[str, int] = {}
        self._lock = threading.RLock()
        self._keys: dict[str, Secret | None] = {}  # LM handle token -> its key, for handles unpickled here
        self._bus = EventBus()  # dspex-level events (evaluation progress) for the dashboard and tests
        self._cancelled_runs: set[str] = set()  # runs asked to stop (rt.cancel_run)
        self._dashboards: list[Any] = []  # served by this runtime, closed with it

    @property
    def base(self) -> str:
        return self.actors.base

    def start(self) -> "Runtime":
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
            raise
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

    def close(self) -> None:
        with self._lock:
            boards, self._dashboards = list(self._dashboards), []
        for board in boards:
            board.close()
        OPEN.remove(self)
        with self._lock:
            for engine in self._engines.values():
                engine.reports.close()
                engine.transport.close()
            self._engines.clear()
            if self._cache is not None:
                self._cache.close()
                self._cache = None
        self.actors.close()

    def flush_reports(self) -> None:
        """Hand the client actors every success report this process still holds (see Reports)."""
        with self._lock:
            engines = list(self._engines.values())
        for engine in engines:
            engine.reports.flush()

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

    # --- clients -----------------------------------------------------------------------------------

    def client_ref(self, cfg: LMConfig, price: Price | None = None) -> ActorRef:
        """The running client actor for ``cfg`` (started on first use; found again after a restart)."""
        if self.clients is None:
            raise ConfigError("the runtime is not started: use `with dspex.runtime() as rt:`")
        with self._lock:
            known = self._configs.get(cfg.client_key)
            if known is not None and known.limits != cfg.limits:
                raise ConfigError(f"a client for {cfg.client_key} already runs with other limits "
                                  f"(rpm={known.rpm}, tpm={known.tpm}, max_in_flight={known.max_in_flight}, "
                                  f"budget_usd={known.budget_usd}, ...): pass the same limits, or name= a separate client")
            child_id = _child_id(cfg)
            running = {c.id: c for c in self.clients.which_children()}
            if child_id in running:
                if running[child_id].ref is None:
                    raise ConfigError(f"the client {cfg.client_key} is restarting; retry the request")
                return running[child_id].ref
            price = price if price is not None else price_for(cfg.qualified, self.prices)
            info = self.clients.start_child(ChildSpec(child_id, ClientActor, args=(cfg, price),
                                                      title=f"client {cfg.qualified}"))
            self._configs[cfg.client_key] = cfg
            return info.ref

    def client_configs(self) -> dict[str, LMConfig]:
        """The settings of each client actor this process started, by client key (no keys in them)."""
        with self._lock:
            return dict(self._configs)

    def remember_call(self, entry: dict) -> None:
        """Keep a call for ``lm.history`` / ``dspex.inspect_history`` (bounded: the last HISTORY calls)."""
        self._history.append(entry)

    def history(self) -> list[dict]:
        return list(self._history)

    def compile_supervisor(self) -> SupervisorRef:
        """The ``compile`` supervisor (started on first use): one journal-keeping actor per compile job."""
        with self._lock:
            if self._compile is None:
                self._compile = self.actors.start_supervisor(SupervisorSpec("one_for_one", intensity=10, period=30.0),
                                                             name="compile")
            return self._compile

    def remember_key(self, token: str, key: Secret | None) -> None:
        """Keep a handle's key in this process, so a copy unpickled here gets it back (it never travels)."""
        with self._lock:
            self._keys[token] = key

    def key_for(self, token: str) -> Secret | None:
        with self._lock:
            return self._keys.get(token)

    def knows_token(self, token: str) -> bool:
        with self._lock:
            return token in self._keys

    def local_model_url(self, name: str, n_ctx: int = 2048, threads: int = 2) -> str:
        """Start (once) the supervised server of local model ``name``; its OpenAI-style base URL."""
        if self.models is None:
            raise ConfigError("the runtime is not started: use `with dspex.runtime() as rt:`")
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

    def response_cache(self) -> ResponseCache:
        """This process's response cache (completions and embeddings), opened on first use."""
        with self._lock:
            if self._cache is None:
                self._cache = ResponseCache(self.cache_dir)
            return self._cache

    def engine(self, cfg: LMConfig, key: Secret | None) -> Engine:
        """This process's HTTP pool and cache for a client (one per client and key)."""
        ident = (cfg.client_key, cfg.max_in_flight, cfg.timeout, key)
        with self._lock:
            engine = self._engines.get(ident)
            if engine is None:
                engine = self._engines[ident] = Engine(Transport(cfg, key), self.response_cache())
            return engine

    def usage(self, run: str | None = None) -> LedgerReport:
        """Ledger totals (all clients, per client, per run) once every client has flushed."""
        if self.clients is None:
            raise ConfigError("the runtime is not started")
        self.flush_reports()
        for info in self.clients.which_children():
            if info.id != "ledger" and info.ref is not None:
                info.ref.call(Flush(), 30.0)
        return self.clients.child("ledger").call(LedgerQuery(run=run), 30.0)

    def open_budget(self, budget: RunBudget) -> None:
        """Hold run ``budget.run`` and the runs inside it to ``budget`` at admission, in every client actor
        (a compile's budget_usd / budget_tokens; see ``clients/budgets.py``). The ledger first: a client
        that starts later learns the open budgets from it."""
        if self.clients is None:
            raise ConfigError("the runtime is not started")
        self.clients.child("ledger").call(OpenBudget(budget), 30.0)
        for info in self.clients.which_children():
            if info.id != "ledger" and info.ref is not None:
                info.ref.call(OpenBudget(budget), 30.0)

    def close_budget(self, run: str) -> None:
        """The run is over: its budget is dropped (a client that exited with it open has nothing to drop)."""
        if self.clients is None:
            return
        try:
            for info in self.clients.which_children():
                if info.ref is not None:
                    info.ref.call(CloseBudget(run), 30.0)
        except (ActorExited, Shutdown) as exc:
            structlog.get_logger("dspex").warning("close_budget", run=run, error=str(exc))

    # --- other processes -------------------------------------------------------------------------

    def info(self) -> "RuntimeInfo":
        """What another process (an evaluation worker) needs to use this runtime's clients."""
        if self.clients is None or self.actors.is_local:
            raise ConfigError("only a started multiproc/tcp runtime can be shared with other processes")
        return RuntimeInfo(self.actors.admin_port, self.actors.root, self.clients.address, self.clients.path,
                           str(self.cache_dir), dict(self.prices))

    @classmethod
    def attach(cls, info: "RuntimeInfo") -> "Runtime":
        """This runtime's clients, seen from another process; ``close`` only drops the connection."""
        rt = cls("multiproc", cache_dir=info.cache_dir, prices=info.prices, log_level=None)
        rt.actors = ActorRuntime.attach(info.admin_port, info.root)
        rt.clients = SupervisorRef(info.clients, info.clients_path, Kind.SUPERVISOR).bind(rt.actors)
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


def _default_runtime() -> Runtime:
    """The process's default runtime: local base, started on first use, closed in order at exit."""
    rt = Runtime("local", name="dspex-default").start()
    atexit.register(rt.close)
    structlog.get_logger("dspex").info("default_runtime_started", base="local",
                                       hint="closed at exit; `with dspex.runtime(...)` chooses another")
    return rt


OPEN.set_default_factory(_default_runtime)


def inspect_history(n: int = 1) -> str:
    """Print (and return) the last ``n`` LM calls of this process's current runtime, as DSPy does."""
    calls = current_runtime().history()[-n:] if n > 0 else []
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


__all__ = ["Runtime", "runtime", "current_runtime", "active_runtime", "open_runtimes", "inspect_history", "Engine", "default_cache_dir"]
