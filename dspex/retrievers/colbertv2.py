"""DSPy's ``ColBERTv2``: a client of a ColBERTv2 search server, each search one request of dspex's client pipeline.

``ColBERTv2(url="http://host:2017/wiki17_abstracts")(query, k=3)`` asks the server for the ``k`` best
passages (``GET <url>?query=...&k=...``, or ``POST <url>`` with ``{"query", "k"}`` when
``post_requests=True``) and returns DSPy's passages: dicts readable as attributes with ``long_text`` (the
passage), ``text``, ``pid`` and ``score`` as the server gave them; ``simplify=True`` gives the texts alone.
It is a retriever for ``dspex.Retrieve``: ``dspex.configure(rm=ColBERTv2(url=...))``.

Why the pipeline and not a bare ``requests.get`` (DSPy's): a search is a request like an LM call, under the
same supervised client actor (one per server URL), so it gets the same rate limits (learned from 429s and
their ``Retry-After``), circuit breaker, retries with backoff, response cache (an identical search is
answered from it and sends nothing) and ledger (each search counts as a request; it costs 0 USD and no
tokens). Its failures are the LM errors: ``ServerError``, ``RateLimited``, ``ConnectionFailed``,
``LMTimeout``, ``MalformedResponse`` (a body that is not ColBERT's ``{"topk": [...]}``, or the server's
``{"error": ..., "message": ...}``). The wire format is ``colbert`` in ``dspex.clients.wire``; the provider
``colbert`` in ``dspex.providers``. Searches are not LM calls: they stay out of ``lm.history``,
``dspex.inspect_history`` and ``dspex.track_usage()``. A URL's ``user:password`` is sent as HTTP Basic auth (as
``requests`` sends it) and kept out of the client's key, its logs and this object's repr.

Where dspex differs from DSPy: a POST search's passages get ``long_text`` too (DSPy sets it on GET only, so
``simplify=True`` with ``post_requests=True`` fails there); a server error is ``MalformedResponse`` after the
retries, not ``ValueError``; DSPy's ``k <= 100`` assertion (its hosted server's limit) is left to the server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..clients.binding import Binding
from ..clients.config import AUTO, Breaker, LMConfig, Secret
from ..clients.messages import ClientStatus, UsageTotals
from ..errors import ConfigError
from ..utils.dummies import AttrDict as dotdict

if TYPE_CHECKING:
    from ..clients.host import ClientHost as Runtime

DEFAULT_URL = "http://0.0.0.0"  # DSPy's default
MODEL = "colbertv2"  # the client's name in errors and the ledger: colbert/colbertv2@<url>
FREE = (0.0, 0.0)  # a search costs nothing (USD per million tokens, and it is billed no tokens)


class ColBERTv2:
    """A ColBERTv2 server's client (see the module docstring). ``url`` and ``port`` as DSPy's (``port`` is
    appended as ``:<port>``); the keyword-only settings are the client actor's, as ``dspex.LM``'s."""

    client_handle = True  # a handle of a client actor: an evaluation worker process binds it to its runtime

    def __init__(self, url: str = DEFAULT_URL, port: str | int | None = None, post_requests: bool = False, *,
                 timeout: float = 10.0, retries: int = 5, cache: bool = True, rpm: float | str | None = AUTO,
                 max_in_flight: int = 16, breaker: Breaker | None = None, backoff_base: float = 0.5,
                 backoff_cap: float = 20.0, name: str | None = None, runtime: "Runtime | None" = None) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"ColBERTv2(url=...) takes the server's http(s):// URL, got {url!r}")
        self.url = f"{url}:{port}" if port else url
        self.post_requests = bool(post_requests)
        self._auth, endpoint = _credentials(self.url)
        self.config = LMConfig(provider="colbert", model=MODEL, base_url=endpoint, max_tokens=1, timeout=timeout,
                               rpm=rpm, tpm=None, max_in_flight=max_in_flight, retries=retries,
                               breaker=breaker or Breaker(), cache=cache, backoff_base=backoff_base,
                               backoff_cap=backoff_cap, name=name)
        self._client = Binding(self.config, self._auth, FREE, runtime)

    def __call__(self, query: str, k: int = 10, simplify: bool = False) -> list[str] | list[dotdict]:
        """The ``k`` best passages for ``query``, best first: DSPy's passages, or their texts with ``simplify``."""
        passages = self._search(query, k)
        if simplify:
            return [p["long_text"] for p in passages]
        return [dotdict(p) for p in passages]

    def _search(self, query: str, k: int) -> list[dict]:
        """One search through the pipeline: the server's passages (at most ``k``), each with ``long_text``."""
        if not isinstance(query, str):
            raise ConfigError(f"a ColBERTv2 search takes a query string, got {type(query).__name__}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be an int >= 1 (how many passages), got {k!r}")
        answer = self._client.send([{"role": "user", "content": query}], {"k": k, "post_requests": self.post_requests})
        return json.loads(answer.text)[:k]  # the wire format checked its shape

    # --- the client behind it --------------------------------------------------------------------

    def bind(self, runtime: "Runtime") -> "ColBERTv2":
        """Search through ``runtime``'s client from now on (an evaluation worker binds the program's retriever
        to the runtime it attached to, which is not the current one there)."""
        self._client.bind(runtime)
        return self

    def usage(self) -> UsageTotals:
        """This client's totals in the ledger (every handle of its URL and ``name``): requests, cache hits,
        retries, failures."""
        return self._client.usage()

    def status(self) -> ClientStatus:
        """The client actor's breaker, rate and queue."""
        return self._client.status()

    # --- values ----------------------------------------------------------------------------------

    def __repr__(self) -> str:
        url = self.url if self._auth is None else self.config.base_url.replace("://", "://***@", 1)
        return f"ColBERTv2(url={url!r}, post_requests={self.post_requests})"

    def __getstate__(self) -> dict:
        """The URL and settings travel (a worker process searches the same server, with the URL's credentials
        if it has them, as DSPy's client would); the binding does not."""
        return {"url": self.url, "post_requests": self.post_requests, "config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.url, self.post_requests, self.config = state["url"], state["post_requests"], state["config"]
        self._auth = _credentials(self.url)[0]
        self._client = Binding(self.config, self._auth, FREE)

    def __copy__(self) -> "ColBERTv2":
        return self

    def __deepcopy__(self, memo: dict) -> "ColBERTv2":
        """A client of a server: copies of a program (optimizers make them) share it."""
        return self


def _credentials(url: str) -> tuple[Secret | None, str]:
    """A URL's ``user:password`` (sent as HTTP Basic auth, as ``requests`` does with them; a ``Secret``, so it is
    masked in whatever dspex writes) and the URL without them (the client's endpoint, in its key and logs)."""
    split = urlsplit(url)
    if split.username is None and split.password is None:
        return None, url
    auth = Secret(f"{unquote(split.username or '')}:{unquote(split.password or '')}")
    return auth, split._replace(netloc=split.netloc.rpartition("@")[2]).geturl()


__all__ = ["ColBERTv2"]
