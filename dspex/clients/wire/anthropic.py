"""``anthropic``: Anthropic's Messages API (``/v1/messages``).

The system messages become its ``system``; content parts its image/document blocks, tool calls and results its
tool_use/tool_result blocks, ``reasoning_effort`` a thinking budget (its thinking blocks come back as
``reasoning_content``); rate limits are advertised in ``anthropic-ratelimit-*`` headers with RFC 3339 reset times.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any, Mapping

from supervision.resilience.adaptive import RateHints

from ...errors import ConfigError
from ..config import LMConfig, Secret
from .base import Parsed, StreamDelta, WireError, WireFormat, _text_of, checked, thinking_budget, with_reasoning
from .headers import _advert, parse_timestamp
from .parts import _forced_tool, _json_args, _tool_functions, _unsupported, content_text, openai_calls, parse_data_url


class Anthropic(WireFormat):
    name = "anthropic"
    usage_at = ("usage", "input_tokens", "output_tokens")
    version = "2023-06-01"

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + "/v1/messages"

    def headers(self, key: Secret | None) -> dict:
        base = {"anthropic-version": self.version}
        return {**base, "x-api-key": key.reveal()} if key else base

    image_types = ("image/jpeg", "image/png", "image/gif", "image/webp")

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        system = "\n\n".join(content_text(m["content"]) for m in messages if m["role"] == "system")
        turns: list[dict] = []
        after_tool = False  # the last turn holds tool results: the next user message joins it (results first)
        for m in messages:
            role = m["role"]
            if role == "system":
                continue
            if role == "tool":
                block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": content_text(m["content"])}
                if after_tool:
                    turns[-1]["content"].append(block)
                else:
                    turns.append({"role": "user", "content": [block]})
                after_tool = True
                continue
            if m.get("tool_calls"):
                blocks = self._blocks(cfg, m["content"]) if m["content"] is not None else []
                blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                            "input": json.loads(c["function"]["arguments"] or "{}")} for c in m["tool_calls"]]
                turns.append({"role": "assistant", "content": blocks})
            elif role == "user" and after_tool:
                turns[-1]["content"].extend(self._blocks(cfg, m["content"]))
            else:
                content = m["content"] if isinstance(m["content"], str) else self._blocks(cfg, m["content"])
                turns.append({"role": role, "content": content})
            after_tool = False
        params = dict(params)
        tools, choice = params.pop("tools", None), params.pop("tool_choice", None)
        parallel = params.pop("parallel_tool_calls", None)
        budget = thinking_budget(cfg, self.name, params.pop("reasoning_effort", None))
        if budget is not None:  # extended thinking: within max_tokens, and at the default temperature only
            params.pop("temperature", None)
            params.pop("top_k", None)
            params["max_tokens"] = max(int(params.get("max_tokens") or 0), budget + 1024)
        body = {"model": cfg.model, "messages": turns, **params}
        if budget is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [{"name": f["name"], **({"description": f["description"]} if f.get("description") else {}),
                              "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
                             for f in _tool_functions(cfg, self.name, tools)]
            mapped = self._tool_choice(cfg, choice)
            if parallel is False and (mapped or {}).get("type") != "none":
                mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
            if mapped is not None:
                body["tool_choice"] = mapped
        return body

    def _tool_choice(self, cfg: LMConfig, choice: Any) -> dict | None:
        if choice is None:
            return None
        if choice in ("auto", "none"):
            return {"type": choice}
        if choice == "required":
            return {"type": "any"}
        if _forced_tool(choice):
            return {"type": "tool", "name": _forced_tool(choice)}
        raise ConfigError(f"tool_choice must be 'auto', 'none', 'required' or {{'type': 'function', 'function': "
                          f"{{'name': ...}}}}, got {choice!r:.100}")

    def _blocks(self, cfg: LMConfig, content: str | list[dict]) -> list[dict]:
        """A content as Anthropic's content blocks (empty text is left out: Anthropic refuses it)."""
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        blocks = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                if part["text"]:
                    blocks.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                url = part["image_url"]["url"]
                found = parse_data_url(url)
                if found is None:
                    blocks.append({"type": "image", "source": {"type": "url", "url": url}})
                elif found[0] in self.image_types:
                    blocks.append({"type": "image", "source": {"type": "base64", "media_type": found[0],
                                                               "data": found[1]}})
                else:
                    raise _unsupported(cfg, self.name, f"an 'image_url' part of type {found[0]} (it takes "
                                                       f"{', '.join(self.image_types)})")
            elif kind == "file":
                blocks.append(self._document(cfg, part["file"]))
            elif kind == "document":
                blocks.append(part)
            else:
                raise _unsupported(cfg, self.name, f"a {kind!r} content part (it takes text, image_url, file "
                                                   "and document parts)")
        return blocks

    def _document(self, cfg: LMConfig, file: dict) -> dict:
        """A ``file`` part as a document block: a PDF as base64, plain text as text."""
        found = parse_data_url(file["file_data"]) if file.get("file_data") else None
        if found is None:
            raise _unsupported(cfg, self.name, "a 'file' part by file_id (an upload id belongs to one provider: "
                                               "pass file_data)")
        mime, data = found
        if mime == "application/pdf":
            source = {"type": "base64", "media_type": mime, "data": data}
        elif mime.startswith("text/"):
            try:
                text = base64.b64decode(data).decode("utf-8")
            except UnicodeDecodeError:
                raise _unsupported(cfg, self.name, f"a 'file' part of type {mime} that is not UTF-8") from None
            source = {"type": "text", "media_type": "text/plain", "data": text}
        else:
            raise _unsupported(cfg, self.name, f"a 'file' part of type {mime} (it takes PDF and text files)")
        block = {"type": "document", "source": source}
        return {**block, "title": file["filename"]} if file.get("filename") else block

    def parse(self, body: Any) -> Parsed:
        try:
            blocks = body["content"]
            text = "".join(_text_of(part["text"]) for part in blocks if part.get("type") == "text")
            calls = [{"id": b["id"], "name": b["name"], "arguments": _json_args(b.get("input", {}))}
                     for b in blocks if b.get("type") == "tool_use"]
            usage = body["usage"]
            parsed = checked(text, usage["input_tokens"], usage["output_tokens"], body.get("model", ""),
                             self.count_fields)
            parsed = replace(parsed, extras=(("tool_calls", openai_calls(calls)),)) if calls else parsed
            return with_reasoning(parsed, "".join(_text_of(b.get("thinking", "")) for b in blocks
                                                  if b.get("type") == "thinking"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not an Anthropic message ({type(exc).__name__}: {exc})") from None

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            kind = data["type"]
            if kind == "message_start":
                message = data["message"]
                return StreamDelta("", message["usage"]["input_tokens"], None, message.get("model"))
            if kind == "content_block_start" and data["content_block"].get("type") == "tool_use":
                block = data["content_block"]
                return StreamDelta(calls=({"index": ("anthropic", data["index"]), "id": block["id"],
                                           "name": block["name"], "arguments": ""},))
            if kind == "content_block_delta":
                delta = data["delta"]
                if delta.get("type") == "input_json_delta":
                    return StreamDelta(calls=({"index": ("anthropic", data["index"]),
                                               "arguments": delta["partial_json"]},))
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
