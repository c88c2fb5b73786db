"""``embeddings``: OpenAI's embeddings API (``POST /embeddings``), which OpenAI-compatible servers speak too
(``dspex.Embedder("openai/<model>")``'s requests, on the same pipeline as chat).

A request's messages are the texts, one per message, sent as ``input``; the answer travels (and would be
cached) as its text, a JSON array of the vectors in input order. Embeddings bill prompt tokens only; the
headers, rate limits and their reset hints are OpenAI's.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import LMConfig
from .base import Parsed, WireError, token_count
from .openai import OpenAI
from .parts import content_text


class Embeddings(OpenAI):
    name = "embeddings"
    streams = False

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + "/embeddings"

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {"model": cfg.model, "input": [content_text(m["content"]) for m in messages]}

    def usage(self, body: Any) -> tuple[int, int] | None:
        block = body.get("usage") if isinstance(body, dict) else None
        try:
            return (token_count("usage.prompt_tokens", block["prompt_tokens"]), 0) if isinstance(block, dict) else None
        except (KeyError, WireError):
            return None

    def parse(self, body: Any) -> Parsed:
        try:
            data = sorted(body["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not an embeddings answer ({type(exc).__name__}: {exc})") from None
        if [d["index"] for d in data] != list(range(len(data))):
            raise WireError("not an embeddings answer: the indexes are not 0..n-1")
        counts = self.usage(body)
        if counts is None:
            raise WireError("not an embeddings answer: no usage.prompt_tokens count")
        model = body.get("model", "")
        return Parsed(json.dumps(vectors), counts[0], 0, model if isinstance(model, str) else "")
