"""``colbert``: the one format that is not chat, a ColBERTv2 search server (``dspex.ColBERTv2``'s searches,
on the same pipeline)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from ..config import LMConfig, Secret
from .base import Parsed, WireError, WireFormat
from .parts import content_text


class ColBERT(WireFormat):
    """A ColBERTv2 search server (DSPy's ``ColBERTv2`` client): ``GET <url>?query=...&k=...``, or ``POST <url>``
    with ``{"query", "k"}`` when the request's params say ``post_requests``; the answer is ``{"topk": [{"text",
    "pid", "score", ...}]}``. The passages travel (and are cached) as the answer's text, a JSON array with each
    passage's ``long_text`` set (DSPy's name for its text). A search bills no tokens; ``{"error": ..., "message":
    ...}`` or any other shape is a WireError (``MalformedResponse`` after the client's retries)."""

    name = "colbert"
    streams = False
    bills = False

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url  # the index's own URL, as given (DSPy's url[:port])

    def headers(self, key: Secret | None) -> dict:
        """The key, if any, is the URL's ``user:password``: HTTP Basic auth (what ``requests`` sends for them)."""
        return {"Authorization": "Basic " + base64.b64encode(key.reveal().encode()).decode()} if key else {}

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {"query": content_text(messages[-1]["content"]), "k": int(params["k"])}

    def request(self, cfg: LMConfig, messages: list[dict], params: dict) -> tuple[str, str, dict | None]:
        search = self.body(cfg, messages, params)
        if params.get("post_requests"):
            return "POST", "", search
        return "GET", urlencode(search), None

    def usage(self, body: Any) -> tuple[int, int] | None:
        return 0, 0  # a search is free: a broken answer is booked at nothing, never at an estimate

    def parse(self, body: Any) -> Parsed:
        if isinstance(body, dict) and body.get("error"):
            raise WireError(f"the ColBERT server answered an error: {str(body.get('message', body['error']))[:200]}")
        found = body.get("topk") if isinstance(body, dict) else None
        if not isinstance(found, list):
            raise WireError("not a ColBERT answer: no 'topk' list of passages")
        passages = []
        for i, passage in enumerate(found):
            text = passage.get("text", passage.get("long_text")) if isinstance(passage, dict) else None
            if not isinstance(text, str):
                raise WireError(f"not a ColBERT answer: topk[{i}] is not a passage with a 'text' string")
            passages.append({**passage, "text": text, "long_text": text})
        return Parsed(json.dumps(passages, ensure_ascii=False), 0, 0, "")
