"""One HTTP attempt over a pooled ``requests.Session``, classified into an :class:`Outcome` value.

The transport never decides about retries, limits or breakers (the client actor does); it only says
what happened, with secrets scrubbed from anything it reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from .config import LMConfig, Secret
from .providers import PROVIDER_IMPLS, WireError

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced. ``kind``: ok | status | timeout | connection | malformed."""

    kind: str
    latency_s: float
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    status: int = 0
    retry_after: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def retryable(self) -> bool:
        if self.kind in ("timeout", "connection", "malformed"):
            return True
        return self.kind == "status" and self.status in RETRYABLE_STATUS

    @property
    def health_failure(self) -> bool:
        """Counts against the breaker: the provider is unwell (not: we were throttled or sent a bad request)."""
        return self.kind in ("timeout", "connection", "malformed") or (self.kind == "status" and self.status >= 500)


class Transport:
    """HTTP for one client in one process: a connection pool sized to ``max_in_flight``."""

    def __init__(self, cfg: LMConfig, key: Secret | None) -> None:
        self.cfg = cfg
        self.provider = PROVIDER_IMPLS[cfg.provider]
        self._key = key
        self._url = self.provider.url(cfg)
        self._headers = {"Content-Type": "application/json", **self.provider.headers(key)}
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=cfg.max_in_flight, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<Transport {self.cfg.qualified} {self._url}>"

    def attempt(self, messages: list[dict], params: dict) -> Outcome:
        body = self.provider.body(self.cfg, messages, params)
        start = time.monotonic()
        try:
            resp = self.session.post(self._url, data=json.dumps(body), headers=self._headers,
                                     timeout=(min(10.0, self.cfg.timeout), self.cfg.timeout))
            raw = resp.content
        except requests.Timeout as exc:
            return Outcome("timeout", time.monotonic() - start, detail=self.scrub(str(exc)))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            return Outcome("connection", time.monotonic() - start, detail=self.scrub(str(exc)))
        latency = time.monotonic() - start
        excerpt = self.scrub(raw[:300].decode("utf-8", "replace"))
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if resp.status_code != 200:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            return Outcome("status", latency, status=resp.status_code, detail=excerpt,
                           retry_after=self.provider.retry_after(headers, data))
        if data is None:
            return Outcome("malformed", latency, status=200, detail=excerpt)
        try:
            parsed = self.provider.parse(data)
        except WireError as exc:
            return Outcome("malformed", latency, status=200, detail=f"{exc}; body: {excerpt}")
        return Outcome("ok", latency, parsed.text, parsed.prompt_tokens, parsed.completion_tokens,
                       parsed.model, status=200)

    def scrub(self, text: str) -> str:
        """Remove the key from text that may echo the request (error bodies, exception messages)."""
        if self._key is not None:
            text = text.replace(self._key.reveal(), "***")
        return text

    def close(self) -> None:
        self.session.close()


__all__ = ["Transport", "Outcome", "RETRYABLE_STATUS"]
