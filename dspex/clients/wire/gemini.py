"""``gemini``: Google's Gemini API (``generateContent``, ``streamGenerateContent``).

The system messages become its ``systemInstruction``; content parts its inline_data/file_data parts, tool calls
and results its functionCall/functionResponse parts, tools its function declarations (their schemas cut to the
subset it takes), ``reasoning_effort`` a thinking budget (its thought parts come back as ``reasoning_content``);
when to retry is in the error body's ``retryDelay``.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import replace
from typing import Any, Mapping

from ...errors import ConfigError
from ..config import LMConfig, Secret
from .base import Parsed, StreamDelta, WireError, WireFormat, _text_of, checked, thinking_budget, with_reasoning
from .headers import parse_duration
from .parts import (_forced_tool, _json_args, _tool_functions, _tool_names, _unsupported, content_text, openai_calls,
                    parse_data_url)


_GEMINI_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                                 "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                                 "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                                 "maximum"})


def _gemini_schema(schema: Any) -> Any:
    """A JSON schema cut to the OpenAPI subset Gemini's function declarations take (it refuses other keys,
    e.g. ``additionalProperties`` or ``$schema``)."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key not in _GEMINI_SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            value = {name: _gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            value = _gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            value = [_gemini_schema(sub) for sub in value]
        out[key] = value
    return out


class Gemini(WireFormat):
    name = "gemini"
    usage_at = ("usageMetadata", "promptTokenCount", "candidatesTokenCount")

    def url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/v1beta/models/{cfg.model}:generateContent"

    def headers(self, key: Secret | None) -> dict:
        return {"x-goog-api-key": key.reveal()} if key else {}

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        system = "\n\n".join(content_text(m["content"]) for m in messages if m["role"] == "system")
        names = _tool_names(messages)
        contents: list[dict] = []
        after_tool = False  # the last content holds function responses: the next result joins it
        for m in messages:
            role = m["role"]
            if role == "system":
                continue
            if role == "tool":
                name = m.get("name") or names.get(m["tool_call_id"])
                if not name:
                    raise ConfigError(f"the tool result for call {m['tool_call_id']!r} names no function, and "
                                      f"provider {cfg.provider!r} (gemini wire format) needs it: give the message "
                                      "'name', or keep the assistant message with that call in the history")
                part = {"functionResponse": {"name": name, "response": {"result": content_text(m["content"])}}}
                if after_tool:
                    contents[-1]["parts"].append(part)
                else:
                    contents.append({"role": "user", "parts": [part]})
                after_tool = True
                continue
            parts = self._parts(cfg, m["content"]) if m["content"] is not None else []
            parts += [{"functionCall": {"name": c["function"]["name"],
                                        "args": json.loads(c["function"]["arguments"] or "{}")}}
                      for c in m.get("tool_calls") or ()]
            contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
            after_tool = False
        params = dict(params)
        tools, choice = params.pop("tools", None), params.pop("tool_choice", None)
        params.pop("parallel_tool_calls", None)  # Gemini has no such switch: it may always call several
        effort = params.pop("reasoning_effort", None)
        config = {"maxOutputTokens" if k == "max_tokens" else k: v for k, v in params.items()}
        if effort is not None:  # its thinking, with the thoughts returned (an effort of "none": none)
            budget = thinking_budget(cfg, self.name, effort)
            config["thinkingConfig"] = ({"thinkingBudget": budget, "includeThoughts": True} if budget is not None
                                        else {"thinkingBudget": 0})
        body: dict = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if tools:
            declarations = []
            for f in _tool_functions(cfg, self.name, tools):
                declaration = {"name": f["name"], **({"description": f["description"]} if f.get("description") else {})}
                schema = _gemini_schema(f.get("parameters") or {})
                if schema.get("properties") or schema.get("type") not in (None, "object"):
                    declaration["parameters"] = schema  # Gemini refuses an object schema with no properties
                declarations.append(declaration)
            body["tools"] = [{"functionDeclarations": declarations}]
            if choice is not None:
                body["toolConfig"] = {"functionCallingConfig": self._tool_choice(choice)}
        return body

    def _tool_choice(self, choice: Any) -> dict:
        modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
        if isinstance(choice, str) and choice in modes:
            return {"mode": modes[choice]}
        if _forced_tool(choice):
            return {"mode": "ANY", "allowedFunctionNames": [_forced_tool(choice)]}
        raise ConfigError(f"tool_choice must be 'auto', 'none', 'required' or {{'type': 'function', 'function': "
                          f"{{'name': ...}}}}, got {choice!r:.100}")

    def _parts(self, cfg: LMConfig, content: str | list[dict]) -> list[dict]:
        """A content as Gemini's parts: text, ``inline_data`` (base64) or ``file_data`` (a URI)."""
        if isinstance(content, str):
            return [{"text": content}]
        parts = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                parts.append({"text": part["text"]})
            elif kind == "image_url":
                url = part["image_url"]["url"]
                found = parse_data_url(url)
                if found is not None:
                    parts.append({"inline_data": {"mime_type": found[0], "data": found[1]}})
                else:
                    mime = mimetypes.guess_type(url.split("?", 1)[0])[0]
                    parts.append({"file_data": {**({"mime_type": mime} if mime else {}), "file_uri": url}})
            elif kind == "input_audio":
                audio = part["input_audio"]
                parts.append({"inline_data": {"mime_type": f"audio/{audio['format'].lower()}", "data": audio["data"]}})
            elif kind == "file":
                file = part["file"]
                found = parse_data_url(file["file_data"]) if file.get("file_data") else None
                if found is not None:
                    parts.append({"inline_data": {"mime_type": found[0], "data": found[1]}})
                else:
                    parts.append({"file_data": {"file_uri": file["file_id"]}})
            else:
                raise _unsupported(cfg, self.name, f"a {kind!r} content part (it takes text, image_url, input_audio "
                                                   "and file parts)")
        return parts

    def parse(self, body: Any) -> Parsed:
        try:
            parts = body["candidates"][0]["content"]["parts"]
            meta = body.get("usageMetadata") or {}
            calls = [{"id": p["functionCall"].get("id"), "name": p["functionCall"]["name"],
                      "arguments": _json_args(p["functionCall"].get("args", {}))} for p in parts if "functionCall" in p]
            parsed = checked("".join(_text_of(p.get("text", "")) for p in parts if not p.get("thought")),
                             meta.get("promptTokenCount", 0), meta.get("candidatesTokenCount", 0),
                             body.get("modelVersion", ""), self.count_fields)
            parsed = replace(parsed, extras=(("tool_calls", openai_calls(calls)),)) if calls else parsed
            return with_reasoning(parsed, "".join(_text_of(p.get("text", "")) for p in parts if p.get("thought")))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"not a Gemini generateContent answer ({type(exc).__name__}: {exc})") from None

    def stream_url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/v1beta/models/{cfg.model}:streamGenerateContent?alt=sse"

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return self.body(cfg, messages, params)

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            candidates, meta = data.get("candidates") or [], data.get("usageMetadata") or {}
            parts = candidates[0].get("content", {}).get("parts", []) if candidates else []
            calls = tuple({"index": None, "id": p["functionCall"].get("id"), "name": p["functionCall"]["name"],
                           "arguments": _json_args(p["functionCall"].get("args", {}))}
                          for p in parts if "functionCall" in p)
            return StreamDelta("".join(_text_of(p.get("text", "")) for p in parts if not p.get("thought")),
                               meta.get("promptTokenCount"),
                               meta.get("candidatesTokenCount"), data.get("modelVersion"), calls)
        except (KeyError, IndexError, TypeError, AttributeError, WireError) as exc:
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
