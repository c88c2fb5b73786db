"""How the provider simulator reads a request: each provider's body parsed into a :class:`SimRequest`.

One parser a wire format (OpenAI chat completions, Anthropic messages, Gemini generateContent), each with its
provider's validation rules: content parts (images, audio, files, documents; base64 and URLs), tool
declarations, tool calls and their results, ``tool_choice``, thinking options. A malformed body raises
``ValueError`` (or the ``KeyError`` / ``TypeError`` of a missing or mistyped field), which the server answers 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .sim_types import SimRequest


def _bad(message: str) -> ValueError:
    return ValueError(message)


_SIM_DATA_URL = re.compile(r"data:(?P<mime>[-\w.+]+/[-\w.+]+)(?:;[-\w.+]+=[^;,]*)*;base64,(?P<data>.*)", re.S)
_ANTHROPIC_IMAGES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_GEMINI_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                                 "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                                 "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                                 "maximum"})


def _base64(data: Any, where: str) -> None:
    if not isinstance(data, str) or not data:
        raise _bad(f"{where}: data must be a non-empty base64 string")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}: data is not valid base64") from None


def _data_url(url: Any, where: str) -> tuple[str, str]:
    match = _SIM_DATA_URL.fullmatch(url) if isinstance(url, str) else None
    if match is None:
        raise _bad(f"{where}: not a base64 data URL")
    _base64(match["data"], where)
    return match["mime"], match["data"]


def _http_url(url: Any, where: str) -> None:
    if not isinstance(url, str) or not re.match(r"https?://\S+$", url):
        raise _bad(f"{where}: url must be http(s)://..., got {url!r:.60}")


def _json_object(text: Any, where: str) -> dict:
    if not isinstance(text, str):
        raise _bad(f"{where}: arguments must be a JSON string")
    value = json.loads(text or "{}")
    if not isinstance(value, dict):
        raise _bad(f"{where}: arguments must encode a JSON object")
    return value


def _openai_content(content: Any, role: str, where: str, parts: list[dict]) -> str:
    """Chat completions' content: its text; each non-text part checked and recorded."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}: content must be a string or an array of content parts")
    text = []
    for j, part in enumerate(content):
        at, kind = f"{where}.content[{j}]", part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _bad(f"{at}: a text part needs text")
            text.append(part["text"])
            continue
        if role != "user":
            raise _bad(f"{at}: {kind!r} parts are only for user messages")
        if kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if isinstance(url, str) and url.startswith("data:"):
                mime, _ = _data_url(url, at)
                if not mime.startswith("image/"):
                    raise _bad(f"{at}: {mime} is not an image")
                parts.append({"kind": "image", "source": "base64", "mime_type": mime, "role": role})
            else:
                _http_url(url, at)
                parts.append({"kind": "image", "source": "url", "mime_type": None, "url": url, "role": role})
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            _base64(audio.get("data"), at)
            if audio.get("format") not in ("wav", "mp3"):
                raise _bad(f"{at}: input_audio format must be wav or mp3")
            parts.append({"kind": "audio", "source": "base64", "mime_type": f"audio/{audio['format']}", "role": role})
        elif kind == "file":
            file = part.get("file") or {}
            if file.get("file_data") is not None:
                mime, _ = _data_url(file["file_data"], at)
                parts.append({"kind": "file", "source": "base64", "mime_type": mime, "role": role})
            elif isinstance(file.get("file_id"), str):
                parts.append({"kind": "file", "source": "file", "mime_type": None, "role": role})
            else:
                raise _bad(f"{at}: a file part needs file_data or file_id")
        else:
            raise _bad(f"{at}: unknown content part type {kind!r}")
    return "".join(text)


def _parse_openai(body: dict) -> SimRequest:
    msgs, parts, ids = [], [], set()
    for i, m in enumerate(body["messages"]):
        where, role = f"messages[{i}]", m["role"]
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _bad(f"{where}: unknown role {role!r}")
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for j, call in enumerate(m["tool_calls"]):
                if call.get("type") != "function" or not isinstance(call.get("id"), str):
                    raise _bad(f"{where}.tool_calls[{j}]: needs an id and type 'function'")
                calls.append({"id": call["id"], "name": call["function"]["name"],
                              "args": _json_object(call["function"].get("arguments"), f"{where}.tool_calls[{j}]")})
                ids.add(call["id"])
            content = m.get("content")
            text = "" if content is None else _openai_content(content, role, where, parts)
            msgs.append({"role": role, "content": text, "tool_calls": calls})
            continue
        if role == "tool":
            if m.get("tool_call_id") not in ids:
                raise _bad(f"{where}: tool_call_id {m.get('tool_call_id')!r} answers no earlier tool call")
            msgs.append({"role": "tool", "content": _openai_content(m["content"], role, where, parts),
                         "tool_call_id": m["tool_call_id"], "name": m.get("name")})
            continue
        msgs.append({"role": "system" if role == "developer" else role,
                     "content": _openai_content(m["content"], role, where, parts)})
    tools = []
    for j, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance((function or {}).get("name"), str):
            raise _bad(f"tools[{j}]: must be {{'type': 'function', 'function': {{'name', ...}}}}")
        tools.append({"name": function["name"], "description": function.get("description", ""),
                      "parameters": function.get("parameters", {})})
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) and choice.get("type") == "function" and bool((choice.get("function") or {})
                                                                                    .get("name"))
    if choice is not None and choice not in ("auto", "none", "required") and not forced:
        raise _bad(f"tool_choice: not a valid choice: {choice!r}")
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    params = {k: v for k, v in body.items() if k not in ("messages", "model")}
    return SimRequest("openai", body["model"], [m for m in msgs if m["role"] != "system"], system, params,
                      tuple(parts), tuple(tools), choice)


def _anthropic_blocks(content: Any, role: str, where: str, parts: list[dict], msgs: list[dict],
                      last_uses: set[str]) -> None:
    """Anthropic's content: text joined into one turn, tool_use into its calls, tool_result into tool turns."""
    if isinstance(content, str):
        msgs.append({"role": role, "content": content})
        return
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}: content must be a string or a non-empty array of content blocks")
    text, calls = [], []
    for j, block in enumerate(content):
        at, kind = f"{where}.content[{j}]", block.get("type")
        if kind == "text":
            if not isinstance(block.get("text"), str) or not block["text"]:
                raise _bad(f"{at}: text content blocks must be non-empty")
            text.append(block["text"])
        elif kind in ("image", "document") and role == "user":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                _base64(source.get("data"), at)
                allowed = _ANTHROPIC_IMAGES if kind == "image" else ("application/pdf",)
                if source.get("media_type") not in allowed:
                    raise _bad(f"{at}: media_type must be one of {allowed}")
            elif source.get("type") == "url":
                _http_url(source.get("url"), at)
            elif kind == "document" and source.get("type") == "text" and isinstance(source.get("data"), str):
                text.append(source["data"])
            else:
                raise _bad(f"{at}: source.type {source.get('type')!r} is not valid for an {kind} block")
            parts.append({"kind": kind, "source": source["type"], "mime_type": source.get("media_type"), "role": role})
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                    or not isinstance(block.get("input"), dict):
                raise _bad(f"{at}: a tool_use block needs id, name and an input object")
            calls.append({"id": block["id"], "name": block["name"], "args": block["input"]})
        elif kind == "tool_result" and role == "user":
            if block.get("tool_use_id") not in last_uses:
                raise _bad(f"{at}: tool_use_id {block.get('tool_use_id')!r} has no tool_use block in the previous "
                           "message")
            result = block.get("content", "")
            result = result if isinstance(result, str) else "".join(b["text"] for b in result if b["type"] == "text")
            msgs.append({"role": "tool", "content": result, "tool_call_id": block["tool_use_id"], "name": None})
        else:
            raise _bad(f"{at}: a {kind!r} block is not valid in a {role} message")
    if text or calls or role == "assistant":
        msgs.append({"role": role, "content": "".join(text), **({"tool_calls": calls} if calls else {})})
    last_uses.clear()
    last_uses.update(c["id"] for c in calls)


def _parse_anthropic(body: dict) -> SimRequest:
    if "max_tokens" not in body:
        raise ValueError("max_tokens is required")
    msgs: list[dict] = []
    parts: list[dict] = []
    last_uses: set[str] = set()
    for i, m in enumerate(body["messages"]):
        if m["role"] not in ("user", "assistant"):
            raise _bad(f"messages[{i}]: role must be user or assistant")
        _anthropic_blocks(m["content"], m["role"], f"messages[{i}]", parts, msgs, last_uses)
    tools = []
    for j, tool in enumerate(body.get("tools") or ()):
        schema = tool.get("input_schema")
        if not isinstance(tool.get("name"), str) or not isinstance(schema, dict) or schema.get("type") != "object":
            raise _bad(f"tools.{j}: needs a name and an input_schema of type object")
        tools.append({"name": tool["name"], "description": tool.get("description", ""), "parameters": schema})
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")
                               or (choice["type"] == "tool" and not isinstance(choice.get("name"), str))):
        raise _bad(f"tool_choice: not a valid choice: {choice!r}")
    _check_anthropic_thinking(body)
    params = {k: v for k, v in body.items() if k not in ("messages", "model", "system")}
    return SimRequest("anthropic", body["model"], msgs, _text(body.get("system", "")), params, tuple(parts),
                      tuple(tools), choice)


def _gemini_schema_check(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise _bad(f"{where}: a schema must be an object")
    unknown = sorted(set(schema) - _GEMINI_SCHEMA_KEYS)
    if unknown:
        raise _bad(f"{where}: Invalid JSON payload received. Unknown name {unknown[0]!r}")
    if str(schema.get("type", "")).lower() == "object" and not schema.get("properties"):
        raise _bad(f"{where}.properties: should be non-empty for OBJECT type")
    for name, sub in (schema.get("properties") or {}).items():
        _gemini_schema_check(sub, f"{where}.properties[{name}]")
    if "items" in schema:
        _gemini_schema_check(schema["items"], f"{where}.items")


def _either(obj: dict, snake: str, camel: str) -> Any:
    return obj.get(snake, obj.get(camel))


def _check_anthropic_thinking(body: dict) -> None:
    """Anthropic's rules for extended thinking (and its refusal of OpenAI's name for it)."""
    if "reasoning_effort" in body:
        raise _bad("reasoning_effort: Extra inputs are not permitted")
    thinking = body.get("thinking")
    if thinking is None:
        return
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if thinking.get("type") != "enabled" or not isinstance(budget, int) or budget < 1024:
        raise _bad("thinking: must be {'type': 'enabled', 'budget_tokens': >= 1024}")
    if budget >= body["max_tokens"]:
        raise _bad("max_tokens must be greater than thinking.budget_tokens")
    if body.get("temperature", 1) != 1 or "top_k" in body:
        raise _bad("temperature may only be set to 1 when thinking is enabled; top_k may not be set")


def _parse_gemini(model: str, body: dict) -> SimRequest:
    if "reasoning_effort" in (body.get("generationConfig") or {}):
        raise _bad("Invalid JSON payload received. Unknown name \"reasoning_effort\" at 'generation_config'")
    msgs: list[dict] = []
    parts_seen: list[dict] = []
    for i, c in enumerate(body["contents"]):
        where, role = f"contents[{i}]", "assistant" if c.get("role") == "model" else "user"
        if c.get("role", "user") not in ("user", "model"):
            raise _bad(f"{where}: role must be user or model")
        if not isinstance(c.get("parts"), list) or not c["parts"]:
            raise _bad(f"{where}: parts must be a non-empty array")
        text, calls, responses = [], [], 0
        for j, part in enumerate(c["parts"]):
            at = f"{where}.parts[{j}]"
            if len(part) != 1:
                raise _bad(f"{at}: a part holds exactly one of text, inline_data, file_data, functionCall, "
                           "functionResponse")
            inline, file = _either(part, "inline_data", "inlineData"), _either(part, "file_data", "fileData")
            call, response = _either(part, "function_call", "functionCall"), _either(part, "function_response",
                                                                                     "functionResponse")
            if "text" in part:
                if not isinstance(part["text"], str):
                    raise _bad(f"{at}: text must be a string")
                text.append(part["text"])
            elif inline is not None:
                mime = _either(inline, "mime_type", "mimeType")
                if not isinstance(mime, str) or "/" not in mime:
                    raise _bad(f"{at}: inline_data needs a mime_type")
                _base64(inline.get("data"), at)
                kind = "image" if mime.startswith("image/") else "audio" if mime.startswith("audio/") else "file"
                parts_seen.append({"kind": kind, "source": "base64", "mime_type": mime, "role": role})
            elif file is not None:
                uri = _either(file, "file_uri", "fileUri")
                if not isinstance(uri, str) or not uri:
                    raise _bad(f"{at}: file_data needs a file_uri")
                mime = _either(file, "mime_type", "mimeType")
                kind = "image" if (mime or "").startswith("image/") else "file"
                parts_seen.append({"kind": kind, "source": "url", "mime_type": mime, "url": uri, "role": role})
            elif call is not None:
                if (role != "assistant" or not isinstance(call.get("name"), str)
                        or not isinstance(call.get("args", {}), dict)):
                    raise _bad(f"{at}: a functionCall (name, args object) belongs in a model turn")
                calls.append({"id": call.get("id"), "name": call["name"], "args": call.get("args", {})})
            elif response is not None:
                if role != "user" or not isinstance(response.get("name"), str) \
                        or not isinstance(response.get("response"), dict):
                    raise _bad(f"{at}: a functionResponse (name, response object) belongs in a user turn")
                msgs.append({"role": "tool", "content": json.dumps(response["response"]), "tool_call_id": None,
                             "name": response["name"]})
                responses += 1
            else:
                raise _bad(f"{at}: unknown part {sorted(part)}")
        if text or calls or not responses:
            msgs.append({"role": role, "content": "".join(text), **({"tool_calls": calls} if calls else {})})
    tools = []
    for j, tool in enumerate(body.get("tools") or ()):
        for k, decl in enumerate(_either(tool, "function_declarations", "functionDeclarations") or ()):
            if not isinstance(decl.get("name"), str):
                raise _bad(f"tools[{j}].functionDeclarations[{k}]: needs a name")
            if "parameters" in decl:
                _gemini_schema_check(decl["parameters"], f"tools[{j}].functionDeclarations[{k}].parameters")
            tools.append({"name": decl["name"], "description": decl.get("description", ""),
                          "parameters": decl.get("parameters", {})})
    config = _either(body.get("toolConfig") or body.get("tool_config") or {}, "function_calling_config",
                     "functionCallingConfig")
    if config is not None and config.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise _bad(f"toolConfig.functionCallingConfig.mode: not a valid mode: {config.get('mode')!r}")
    system = "".join(p["text"] for p in (body.get("systemInstruction") or {}).get("parts", []))
    return SimRequest("gemini", model, msgs, system, dict(body.get("generationConfig") or {}), tuple(parts_seen),
                      tuple(tools), config)


def _parse_ollama(provider: str, body: dict) -> SimRequest:
    """Ollama's /api/chat (``messages``, string contents) and /api/generate (``prompt``, ``system``), as the
    server checks them: ``stream`` a boolean (absent: true, as Ollama streams by default), ``options`` an object."""
    if not isinstance(body.get("stream", True), bool):
        raise _bad("stream must be true or false")
    if not isinstance(body.get("options", {}), dict):
        raise _bad("options must be an object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model is required")
    if provider == "ollama":
        if not isinstance(body.get("prompt"), str):
            raise _bad("prompt must be a string")
        msgs, system = [{"role": "user", "content": body["prompt"]}], body.get("system", "")
    else:
        msgs = []
        for i, m in enumerate(body["messages"]):
            if m.get("role") not in ("system", "user", "assistant", "tool") or not isinstance(m.get("content"), str):
                raise _bad(f"messages[{i}]: needs a role and a string content")
            msgs.append({"role": m["role"], "content": m["content"]})
        system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
        msgs = [m for m in msgs if m["role"] != "system"]
    tools = tuple({"name": t["function"]["name"], "description": t["function"].get("description", ""),
                   "parameters": t["function"].get("parameters", {})} for t in body.get("tools") or ())
    params = {**body.get("options", {}), **({"format": body["format"]} if "format" in body else {})}
    return SimRequest(provider, body["model"], msgs, system, params, (), tools)


def _parse_bedrock(model: str, body: dict) -> SimRequest:
    """Converse: ``messages`` of ``{"role", "content": [{"text"}]}`` alternating from a user turn, ``system``
    blocks, ``inferenceConfig``."""
    msgs = []
    for i, m in enumerate(body["messages"]):
        if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), list):
            raise _bad(f"messages[{i}]: needs role user or assistant and a list of content blocks")
        if msgs and msgs[-1]["role"] == m["role"]:
            raise _bad(f"messages[{i}]: roles must alternate (ValidationException)")
        msgs.append({"role": m["role"], "content": "".join(b["text"] for b in m["content"])})
    if not msgs or msgs[0]["role"] != "user":
        raise _bad("messages: a conversation must start with a user message (ValidationException)")
    system = "\n".join(b["text"] for b in body.get("system") or ())
    return SimRequest("bedrock", model, msgs, system, dict(body.get("inferenceConfig") or {}))


def _parse(provider: str, model: str, body: dict) -> SimRequest:
    if provider == "bedrock":
        return _parse_bedrock(model, body)
    if provider == "openai":
        return _parse_openai(body)
    if provider == "anthropic":
        return _parse_anthropic(body)
    if provider in ("ollama_chat", "ollama"):
        return _parse_ollama(provider, body)
    return _parse_gemini(model, body)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")
