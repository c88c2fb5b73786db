"""A handle that is not an LM on a client actor: a retriever's searches (``dspex.ColBERTv2``) and an
embedder's requests (``dspex.Embedder``) go through the same pipeline as chat, under one supervised client
actor per endpoint (its limits, breaker, retries, ledger), without entering the LM call history.

A :class:`Binding` finds its runtime (the one given, else the current one) and this process's pipeline of
the client there on first use, and again when another runtime is current (a handle unpickled in an
evaluation worker binds there). It is never pickled: its owner keeps the settings and makes a new one.
"""

from __future__ import annotations

import threading
from typing import Any

from .config import LMConfig, Secret
from .prices import Price
from .host import current_runtime
from .messages import ClientStatus, Completion, GetStatus, GetUsage, UsageTotals
from .pipeline import Pipeline, Request
from .scope import current_run


class Binding:
    """The client of ``config`` (key ``key``, price ``price``; None: the runtime's price table) on a runtime."""

    def __init__(self, config: LMConfig, key: Secret | None, price: Price | None, runtime: Any = None) -> None:
        self.config, self._key, self._price = config, key, price
        self._given_runtime = runtime
        self._bound: tuple[Any, Pipeline] | None = None
        self._lock = threading.Lock()

    def send(self, messages: list[dict], params: dict | None = None) -> Completion:
        """One request through the pipeline (cache, lease, retries, report), in the caller's run."""
        return self.get()[1].send(Request(self.config, messages, dict(params or {}), run=current_run()))

    def get(self) -> tuple[Any, Pipeline]:
        runtime = self._given_runtime or current_runtime()
        with self._lock:
            if self._bound is None or self._bound[0] is not runtime:
                runtime.client_ref(self.config, self._price)  # started now; other limits for it: ConfigError
                self._bound = (runtime, runtime.engines.pipeline(self.config, self._key, self._price, remember=False))
            return self._bound

    def bind(self, runtime: Any) -> None:
        """Use ``runtime``'s client from now on (bound at once, so a bad setting shows here)."""
        with self._lock:
            self._given_runtime, self._bound = runtime, None
        self.get()

    def usage(self) -> UsageTotals:
        """The client's totals in the ledger (every handle of its endpoint and name)."""
        runtime, pipeline = self.get()
        runtime.engines.flush()  # this process's batched reports first
        return pipeline.link.call(GetUsage())

    def status(self) -> ClientStatus:
        """The client actor's breaker, rate and queue."""
        return self.get()[1].link.call(GetStatus())


__all__ = ["Binding"]
