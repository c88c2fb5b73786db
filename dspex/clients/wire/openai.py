"""``openai``: OpenAI's chat completions (``/chat/completions``), which every OpenAI-compatible API speaks;
and ``local``, the same format for a model served by ``dspex.local.server``.

Messages, content parts and tools go as they are (the chat-completions shape is dspex's own); rate limits are
advertised in ``x-ratelimit-*`` headers with durations (``"6m0s"``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from supervision.resilience.adaptive import RateHints

from ..config import LMConfig, Secret
from .base import Parsed, StreamDelta, WireError, WireFormat, _text_of, checked, with_reasoning
from .headers import _advert, parse_duration
from .parts import _tool_functions, _unsupported, content_text


class OpenAI(WireFormat):
    name = "openai"

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + "/chat/completions"

    def headers(self, key: Secret | None) -> dict:
        return {"Authorization": f"Bearer {key.reveal()}"} if key else {}

    takes = ("text", "image_url", "input_audio", "file")  # the content part types it renders

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        for m in messages:
            for part in m["content"] if isinstance(m.get("content"), list) else ():
                if part["type"] not in self.takes:
                    raise _unsupported(cfg, self.name, f"a {part['type']!r} content part (it takes "
                                                       f"{', '.join(self.takes)})")
        if "tools" in params:
            _tool_functions(cfg, self.name, params["tools"])
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
            parsed = replace(parsed, extras=extras) if extras else parsed
            reasoning = choice["message"].get("reasoning_content")  # DeepSeek's, vLLM's reasoning parsers'
            return with_reasoning(parsed, reasoning if isinstance(reasoning, str) else "")
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not an OpenAI chat completion ({type(exc).__name__}: {exc})") from None

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return {**self.body(cfg, messages, params), "stream": True, "stream_options": {"include_usage": True}}

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            choices, usage = data.get("choices") or [], data.get("usage") or {}
            delta = (choices[0].get("delta") or {}) if choices else {}
            calls = tuple({"index": ("openai", c.get("index", 0)), "id": c.get("id"),
                           "name": (c.get("function") or {}).get("name"),
                           "arguments": (c.get("function") or {}).get("arguments") or ""}
                          for c in delta.get("tool_calls") or ())
            return StreamDelta(_text_of(delta.get("content")), usage.get("prompt_tokens"),
                               usage.get("completion_tokens"), data.get("model"), calls)
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


class Local(OpenAI):
    """A local model served by ``dspex.local.server``: the OpenAI format, no key (answers come whole)."""

    name = "local"
    streams = False
    takes = ("text",)

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        """Text parts joined into strings: the local server takes string contents only."""
        body = super().body(cfg, messages, params)
        body["messages"] = [{**m, "content": content_text(m["content"])} if isinstance(m.get("content"), list) else m
                            for m in messages]
        return body
