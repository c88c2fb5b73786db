"""The client side of a runtime in one process: request pipelines, the response cache, keys, history.

A runtime holds one :class:`Engines` (``rt.engines``). It makes one :class:`~dspex.clients.pipeline.Pipeline`
per client and key in this process (the HTTP pool sized to the client's ``max_in_flight``, with the
lease channel this process needs), opens the response cache on first use, keeps the keys of the LM
handles made here (a handle unpickled in this process gets its key back from here; keys never travel)
and the last calls for ``lm.history``. Which client actor a pipeline talks to is the runtime's
business: it hands in ``find_client`` (start or find the actor) and whether this process is the
actors' own (``direct``), so nothing here reaches up to the runtime.
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import structlog

from .cache import ResponseCache
from .config import LMConfig, Secret
from .event_loop import STOP_TIMEOUT, EventLoop, LoopState
from .pipeline import ClientLink, Pipeline
from .prices import Price
from .transport import Transport

if TYPE_CHECKING:
    from supervision import ActorRef

log = structlog.get_logger("dspex")

HISTORY = 200  # LM calls a process remembers for inspect_history (bounded: a long run does not grow memory)


class Engines:
    """See the module docstring. ``cache_dir`` None: the response cache lives in memory only."""

    def __init__(self, cache_dir: Path | None, *, direct: bool,
                 find_client: Callable[[LMConfig, Price | None], "ActorRef"]) -> None:
        self.cache_dir = cache_dir
        self.direct = direct  # this process is the client actors' own (a local runtime): leases by direct calls
        # seconds of this process's need whose leases its pipelines hold ahead (0: none; an evaluation worker
        # on another host sets it before its first request, so its LM calls do not each reach the leader)
        self.lease_ahead = 0.0
        self._find_client = find_client
        self._lock = threading.RLock()
        self._pipelines: dict[tuple, Pipeline] = {}
        self._cache: ResponseCache | None = None
        self._keys: dict[str, Secret | None] = {}  # LM handle token -> its key, for handles unpickled here
        self._history: deque[dict] = deque(maxlen=HISTORY)
        self.loop = EventLoop("dspex-loop")  # the asyncio engine's loop, started on first use

    def pipeline(self, cfg: LMConfig, key: Secret | None, price: Price | None = None, *,
                 transport: Any = None, owner: Any = None, remember: bool = True) -> Pipeline:
        """This process's pipeline for a client (one per client and key). A handle that brings its own
        ``transport`` (a ``dspex.BaseLM``: its ``forward``) gets a pipeline of its own, dropped (its reports
        handed over first) when the ``owner`` handle is garbage-collected. ``remember=False``: the client's
        requests stay out of the LM call history (a retriever's searches)."""
        ident: tuple = (cfg.client_key, cfg.max_in_flight, cfg.timeout, key, cfg.transport_key)
        if transport is not None:
            ident = (*ident, id(owner))
        with self._lock:
            found = self._pipelines.get(ident)
            if found is None:
                link = ClientLink(lambda: self._find_client(cfg, price), cfg.qualified)
                found = self._pipelines[ident] = Pipeline(transport or Transport(cfg, key), self.response_cache(),
                                                          link, self._history if remember else None,
                                                          direct=self.direct, loop=self.loop,
                                                          ahead=0.0 if self.direct else self.lease_ahead)
                if owner is not None:
                    weakref.finalize(owner, self._drop, ident)
            return found

    def _drop(self, ident: tuple) -> None:
        with self._lock:
            pipeline = self._pipelines.pop(ident, None)
        if pipeline is not None:
            pipeline.close()

    def response_cache(self) -> ResponseCache:
        """This process's response cache (completions and embeddings), opened on first use."""
        with self._lock:
            if self._cache is None:
                self._cache = ResponseCache(self.cache_dir)
            return self._cache

    def flush(self) -> None:
        """Hand the client actors every success report this process still holds, and write the cache's
        pending puts: a row reported from a worker process is then in the ledger and, for the next run's
        workers, in the cache file."""
        with self._lock:
            pipelines, cache = list(self._pipelines.values()), self._cache
        for pipeline in pipelines:
            pipeline.flush()
        if cache is not None:
            cache.flush()

    def _current(self) -> list[Pipeline]:
        """This process's pipelines now (a copy: each is then used outside the lock)."""
        with self._lock:
            return list(self._pipelines.values())

    def take_reports(self) -> list[tuple[Any, list]]:
        """Every success report this process has not sent yet, as (client actor address, reports), taken: the
        caller delivers them (an evaluation worker on a host, with its rows, through the coordinator, so the
        client actor gets one message for all hosts rather than one from each)."""
        return [found for pipeline in self._current() for found in pipeline.take_reports()]

    def put_back_reports(self, taken: list[tuple[Any, list]]) -> None:
        """Reports :meth:`take_reports` took that did not reach the coordinator (its call failed): they go to
        their client actors as usual (a second copy, if the call did arrive, is recognised there)."""
        pipelines = self._current()
        for address, reports in taken:
            if not any(pipeline.put_back_reports(address, reports) for pipeline in pipelines):
                log.warning("reports_lost", reports=len(reports), why="their pipeline closed")

    def give_back(self) -> None:
        """Give back every lease this process holds ahead of need (``ahead.py``): it will make no more requests
        (an evaluation worker stopping), so those places go back now, unbooked, not by the actor's sweep."""
        for pipeline in self._current():
            pipeline.give_back()

    def close(self) -> None:
        """Send what is pending, close the HTTP pools and write the cache's last puts."""
        with self._lock:
            pipelines, self._pipelines = list(self._pipelines.values()), {}
            cache, self._cache = self._cache, None
        if self.loop.state is LoopState.RUNNING:  # the HTTP sessions on the loop close on it, then the loop
            for pipeline in pipelines:
                try:
                    self.loop.submit(pipeline.aclose()).result(STOP_TIMEOUT)
                except (concurrent.futures.TimeoutError, OSError) as exc:
                    log.warning("http_session_not_closed", model=pipeline.link.model, error=repr(exc))
        self.loop.close()
        for pipeline in pipelines:
            pipeline.close()
        if cache is not None:
            cache.close()

    # --- keys and history --------------------------------------------------------------------------

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

    def history(self) -> list[dict]:
        """The last HISTORY calls made through this process's pipelines, oldest first."""
        return list(self._history)


__all__ = ["Engines", "HISTORY"]
