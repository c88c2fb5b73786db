"""Wire formats: how a provider wants a chat request, and where its answer and token counts are.

A provider's entry in the registry (``dspex/providers.py``) names its wire format; this module holds
one stateless class per format (``WireFormat`` subclasses), found by name in :data:`WIRE_FORMATS`.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Mapping

from supervision.resilience.adaptive import Advert, RateHints

from ..providers import PROVIDERS
from .config import LMConfig, Secret


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

    streams = True  # answers can come as server-sent events

    def stream_url(self, cfg: LMConfig) -> str:
        return self.url(cfg)

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {**self.body(cfg, messages, params), "stream": True}

    def stream_event(self, data: Any) -> StreamDelta:
        """One event's JSON → what it adds (WireError if it is not the provider's shape)."""
        raise NotImplementedError


class OpenAI(WireFormat):
    name = "openai"

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + "/chat/completions"

    def headers(self, key: Secret | None) -> dict:
        return {"Authorization": f"Bearer {key.reveal()}"} if key else {}

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {"model": cfg.model, "messages": messages, **params}

    def parse(self, body: Any) -> Parsed:
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"]
            usage = body.get("usage") or {}
            parsed = checked(_text_of(content), usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                             body.get("model", ""), self.count_fields)
            extras = tuple((name, value) for name, value in (("logprobs", choice.get("logprobs")),
                                                             ("tool_calls", choice["message"].get("tool_calls")))
                           if value)
            return replace(parsed, extras=extras) if extras else parsed
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not an OpenAI chat completion ({type(exc).__name__}: {exc})") from None

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {**self.body(cfg, messages, params), "stream": True, "stream_options": {"include_usage": True}}

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            choices, usage = data.get("choices") or [], data.get("usage") or {}
            text = _text_of(choices[0].get("delta", {}).get("content")) if choices else ""
            return StreamDelta(text, usage.get("prompt_tokens"), usage.get("completion_tokens"), data.get("model"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise WireError(f"not an OpenAI chat completion chunk ({type(exc).__name__}: {exc})") from None

    def reset_hint(self, headers: Mapping[str, str], body: Any) -> float | None:
        resets = [parse_duration(headers[h]) for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
                  if h in headers]
        resets = [r for r in resets if r is not None]
        return max(resets) if resets else None

    def rate_hints(self, headers: Mapping[str, str]) -> RateHints | None:
        if headers.get("x-ratelimit-limit-requests") is None and headers.get("x-ratelimit-limit-tokens") is None:
            return None
        return RateHints(*(_advert(headers, f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}",
                                   f"x-ratelimit-reset-{kind}", parse_duration) for kind in ("requests", "tokens")))


class Anthropic(WireFormat):
    name = "anthropic"
    usage_at = ("usage", "input_tokens", "output_tokens")
    version = "2023-06-01"

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + "/v1/messages"

    def headers(self, key: Secret | None) -> dict:
        base = {"anthropic-version": self.version}
        return {**base, "x-api-key": key.reveal()} if key else base

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        body = {"model": cfg.model, "messages": turns, **params}
        if system:
            body["system"] = system
        return body

    def parse(self, body: Any) -> Parsed:
        try:
            text = "".join(_text_of(part["text"]) for part in body["content"] if part.get("type") == "text")
            usage = body["usage"]
            return checked(text, usage["input_tokens"], usage["output_tokens"], body.get("model", ""),
                           self.count_fields)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not an Anthropic message ({type(exc).__name__}: {exc})") from None

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            kind = data["type"]
            if kind == "message_start":
                message = data["message"]
                return StreamDelta("", message["usage"]["input_tokens"], None, message.get("model"))
            if kind == "content_block_delta":
                delta = data["delta"]
                return StreamDelta(_text_of(delta.get("text", "")) if delta.get("type") == "text_delta" else "")
            if kind == "message_delta":
                return StreamDelta("", None, (data.get("usage") or {}).get("output_tokens"))
            if kind == "error":
                raise WireError(f"the stream reported an error: {data.get('error')}")
            return StreamDelta()
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not an Anthropic stream event ({type(exc).__name__}: {exc})") from None

    def reset_hint(self, headers: Mapping[str, str], body: Any) -> float | None:
        for header in ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset"):
            if header in headers:
                return parse_timestamp(headers[header])
        return None

    def rate_hints(self, headers: Mapping[str, str]) -> RateHints | None:
        if (headers.get("anthropic-ratelimit-requests-limit") is None
                and headers.get("anthropic-ratelimit-tokens-limit") is None):
            return None
        return RateHints(*(_advert(headers, f"anthropic-ratelimit-{kind}-limit", f"anthropic-ratelimit-{kind}-remaining",
                                   f"anthropic-ratelimit-{kind}-reset", parse_timestamp)
                           for kind in ("requests", "tokens")))


class Gemini(WireFormat):
    name = "gemini"
    usage_at = ("usageMetadata", "promptTokenCount", "candidatesTokenCount")

    def url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/v1beta/models/{cfg.model}:generateContent"

    def headers(self, key: Secret | None) -> dict:
        return {"x-goog-api-key": key.reveal()} if key else {}

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        contents = [{"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
                    for m in messages if m["role"] != "system"]
        config = {"maxOutputTokens" if k == "max_tokens" else k: v for k, v in params.items()}
        body: dict = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        return body

    def parse(self, body: Any) -> Parsed:
        try:
            parts = body["candidates"][0]["content"]["parts"]
            meta = body.get("usageMetadata") or {}
            return checked("".join(_text_of(p.get("text", "")) for p in parts), meta.get("promptTokenCount", 0),
                           meta.get("candidatesTokenCount", 0), body.get("modelVersion", ""), self.count_fields)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise WireError(f"not a Gemini generateContent answer ({type(exc).__name__}: {exc})") from None

    def stream_url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/v1beta/models/{cfg.model}:streamGenerateContent?alt=sse"

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return self.body(cfg, messages, params)

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            candidates, meta = data.get("candidates") or [], data.get("usageMetadata") or {}
            parts = candidates[0].get("content", {}).get("parts", []) if candidates else []
            return StreamDelta("".join(_text_of(p.get("text", "")) for p in parts), meta.get("promptTokenCount"),
                               meta.get("candidatesTokenCount"), data.get("modelVersion"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise WireError(f"not a Gemini stream chunk ({type(exc).__name__}: {exc})") from None

    def reset_hint(self, headers: Mapping[str, str], body: Any) -> float | None:
        try:
            details = body["error"]["details"]
        except (KeyError, TypeError):
            return None
        for detail in details if isinstance(details, list) else []:
            if isinstance(detail, dict) and "retryDelay" in detail:
                return parse_duration(str(detail["retryDelay"]))
        return None


class Local(OpenAI):
    """A local model served by ``dspex.local.server``: the OpenAI format, no key (answers come whole)."""

    name = "local"
    streams = False


WIRE_FORMATS: dict[str, WireFormat] = {w.name: w for w in (OpenAI(), Anthropic(), Gemini(), Local())}


def wire_for(provider: str) -> WireFormat:
    """The wire format a provider speaks (its registry entry names it)."""
    return WIRE_FORMATS[PROVIDERS[provider].wire]

_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """OpenAI/Google style durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``."""
    text = text.strip()
    if not text:
        return None
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        pos = match.end()
        total += float(match["num"]) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match["unit"]]
    return total if pos == len(text) else None


def _advert(headers: Mapping[str, str], limit: str, remaining: str, reset: str,
            parse_reset: Any) -> Advert | None:
    """One advertised limit from three headers; unreadable values are left out (never an error)."""
    values = [_number(headers.get(limit)), _number(headers.get(remaining))]
    raw_reset = headers.get(reset)
    reset_s = parse_reset(raw_reset) if raw_reset else None
    if values[0] is None or values[0] <= 0:
        return None
    return Advert(values[0], values[1], reset_s)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number and number >= 0 and number != float("inf") else None


def parse_retry_after(value: str) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date (RFC 9110); None when unreadable."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_timestamp(value: str) -> float | None:
    """An RFC 3339 reset time (Anthropic) as seconds from now."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = ["WireFormat", "OpenAI", "Anthropic", "Gemini", "Local", "WIRE_FORMATS", "wire_for", "Parsed", "WireError",
           "token_count", "MAX_TOKEN_COUNT", "parse_duration", "parse_retry_after", "parse_timestamp"]
