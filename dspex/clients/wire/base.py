"""What every wire format shares: an answer (:class:`Parsed`), what a streamed event adds (:class:`StreamDelta`),
:class:`WireError`, the one check of a token count, native reasoning budgets, and :class:`WireFormat`, the
class each format's module subclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from supervision.resilience.adaptive import RateHints

from ...errors import ConfigError
from ..config import LMConfig, Secret
from .headers import parse_retry_after


class WireError(ValueError):
    """The body does not have the shape the provider documents (becomes ``MalformedResponse``)."""


@dataclass(frozen=True)
class Parsed:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    extras: tuple[tuple[str, Any], ...] = ()  # ("logprobs", ...), ("tool_calls", ...) when the answer has them


@dataclass(frozen=True)
class StreamDelta:
    """What one server-sent event of a streamed answer adds: text, and the counts or model when it says them."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    # pieces of tool calls: {"index": key or None (a whole new call), "id", "name", "arguments": a JSON fragment}
    calls: tuple[dict, ...] = ()


def _text_of(content: Any) -> str:
    """A message's text: a string, or OpenAI-style content parts; anything else is not an answer."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
        return "".join(p.get("text", "") for p in content if p.get("type", "text") == "text")
    raise WireError(f"the answer's content is a {type(content).__name__}, not text")


MAX_TOKEN_COUNT = 100_000_000  # more than any one request is billed (the largest context windows hold 10M)


def token_count(field: str, value: Any) -> int:
    """The one check of a token count a provider sends (every answer's counts pass here): an integer from
    0 to MAX_TOKEN_COUNT. JSON has one number type, so a whole float (``12.0``) is taken; a fraction, a
    string, a bool, a negative or an absurd count (``1e100``) would make totals and budgets lie: WireError
    naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"the token count {field} is {value!r}, not a non-negative integer")
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise WireError(f"the token count {field} is {value!r}, not a non-negative integer")
    if not 0 <= value <= MAX_TOKEN_COUNT:
        raise WireError(f"the token count {field} is {value!r}, not an integer from 0 to {MAX_TOKEN_COUNT} "
                        "(no request is billed more)")
    return int(value)


def checked(text: str, prompt_tokens: Any, completion_tokens: Any, model: Any,
            fields: tuple[str, str] = ("prompt_tokens", "completion_tokens")) -> Parsed:
    """An answer whose token counts (named ``fields`` in the body) pass :func:`token_count`."""
    return Parsed(text, token_count(fields[0], prompt_tokens), token_count(fields[1], completion_tokens),
                  model if isinstance(model, str) else "")


# --- native reasoning ----------------------------------------------------------------------------------------
# ``reasoning_effort`` (OpenAI's name, DSPy's adapters set it for a ``dspy.Reasoning`` output) is sent to
# OpenAI-compatible APIs as it is; Anthropic and Gemini take a token budget for their thinking instead,
# and their answers carry the thinking as blocks / parts of their own, returned as ``reasoning_content``.
THINKING_BUDGET = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}  # LiteLLM's mapping
OFF = ("none", "disable", "disabled")


def thinking_budget(cfg: LMConfig, wire: str, effort: Any) -> int | None:
    """The thinking budget an effort asks for (None: no thinking); ConfigError for an unknown effort."""
    if effort is None or effort in OFF:
        return None
    if effort not in THINKING_BUDGET:
        raise ConfigError(f"{cfg.qualified}: reasoning_effort must be one of {', '.join([*THINKING_BUDGET, *OFF])}, "
                          f"got {effort!r} ({wire} takes it as a thinking budget)")
    return THINKING_BUDGET[effort]


def with_reasoning(parsed: Parsed, reasoning: str) -> Parsed:
    """``parsed`` with the answer's reasoning text among its extras (DSPy's ``reasoning_content``)."""
    return replace(parsed, extras=(*parsed.extras, ("reasoning_content", reasoning))) if reasoning else parsed


class WireFormat:
    """One wire format's request building and response parsing (stateless)."""

    name = ""
    usage_at = ("usage", "prompt_tokens", "completion_tokens")  # where a body says its counts: block, prompt, completion

    @property
    def count_fields(self) -> tuple[str, str]:
        block, prompt, completion = self.usage_at
        return f"{block}.{prompt}", f"{block}.{completion}"

    def usage(self, body: Any) -> tuple[int, int] | None:
        """The counts a body that is not a valid answer still states readably (a 200 is billed even when
        its answer is broken), else None."""
        block_name, prompt, completion = self.usage_at
        block = body.get(block_name) if isinstance(body, dict) else None
        if not isinstance(block, dict) or prompt not in block or completion not in block:
            return None
        fields = self.count_fields
        try:
            return token_count(fields[0], block[prompt]), token_count(fields[1], block[completion])
        except WireError:
            return None

    def url(self, cfg: LMConfig) -> str:
        raise NotImplementedError

    def headers(self, key: Secret | None) -> dict:
        raise NotImplementedError

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        raise NotImplementedError

    def request(self, cfg: LMConfig, messages: list[dict], params: dict) -> tuple[str, str, dict | None]:
        """A request that is not streamed, as (HTTP method, query string added to :meth:`url`, JSON body or
        None): chat formats POST their :meth:`body`; a search API may ask with GET and a query string."""
        return "POST", "", self.body(cfg, messages, params)

    bills = True  # each answer costs tokens (False: the API bills nothing, e.g. a retriever's search)

    signs = False  # True: each attempt's headers are made by signed() (a signature over the body and the time)

    def signed(self, cfg: LMConfig, key: Secret | None, method: str, url: str, headers: dict,
               body: bytes | None, state: dict | None = None) -> dict:
        """The headers of one attempt, for a format whose requests are signed (AWS SigV4) or carry a token
        that expires (an OAuth access token); ``state`` is the transport's own, kept between attempts."""
        return headers

    def parse(self, body: Any) -> Parsed:
        raise NotImplementedError

    def retry_after(self, headers: Mapping[str, str], body: Any) -> float | None:
        """Seconds the provider asks us to wait: ``Retry-After`` first, then its own reset hints."""
        value = headers.get("retry-after")
        found = parse_retry_after(value) if value else None
        return found if found is not None else self.reset_hint(headers, body)

    def reset_hint(self, headers: Mapping[str, str], body: Any) -> float | None:
        """The provider's own way of saying when limits reset (lowercase ``headers``)."""
        return None

    def rate_hints(self, headers: Mapping[str, str]) -> RateHints | None:
        """The request and token limits the provider advertises in its response headers (None: none)."""
        return None

    streams = True  # answers can come as a stream
    # how the stream is framed: "sse" (server-sent events: JSON on each ``data:`` line), "ndjson" (a JSON
    # object a line: Ollama), "aws-eventstream" (AWS's binary event stream: Bedrock's ConverseStream, each
    # event handed to stream_event as {"event": its type, "payload": its JSON})
    stream_framing = "sse"

    def stream_url(self, cfg: LMConfig) -> str:
        return self.url(cfg)

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {**self.body(cfg, messages, params), "stream": True}

    def stream_event(self, data: Any) -> StreamDelta:
        """One event's JSON → what it adds (WireError if it is not the provider's shape)."""
        raise NotImplementedError
