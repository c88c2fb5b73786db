"""Content parts and tool calls in the chat-completions shape: checked on the way in, estimated for admission,
and the helpers the formats share to render tools and to give an answer's tool calls back in OpenAI's shape."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from ...errors import ConfigError
from ..config import LMConfig
from .base import WireError


# --- content parts and tool calls ------------------------------------------------------------------------
# dspex.LM takes chat messages in the chat-completions shape (DSPy's): a content is a string or a list of
# content parts, an assistant message may carry ``tool_calls``, a ``role: "tool"`` message is a tool's
# result. :func:`check_message` validates one (ConfigError naming the message and part); each wire format
# renders them as its provider's parts, and refuses (ConfigError naming the provider and part type) a part
# its provider cannot take.

IMAGE_TOKENS = 1_600  # an image in the token estimate (the most Anthropic bills a resized image; OpenAI's
#                       high detail 2048x768 is 765, Gemini's tile 258): a stated budget, not a count
MEDIA_TOKENS = 3_000  # an audio clip, a file or a document (a few pages) in the token estimate
PART_TYPES = ("text", "image_url", "input_audio", "file", "document")
_DATA_URL = re.compile(r"data:(?P<mime>[-\w.+]+/[-\w.+]+)(?:;[-\w.+]+=[^;,]*)*;base64,(?P<data>.*)", re.S)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` → (mime, data); None when ``url`` is not a base64 data URL."""
    match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
    return (match["mime"].lower(), match["data"]) if match else None


def _is_base64(data: Any) -> bool:
    if not isinstance(data, str) or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_part(part: Any, where: str, role: str) -> dict:
    """One content part, checked (a shallow copy); ConfigError naming ``where`` and what is wrong."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ConfigError(f"{where} must be a content part {{'type': one of {PART_TYPES}, ...}}, got {part!r:.200}")
    kind = part["type"]
    if kind not in PART_TYPES:
        raise ConfigError(f"{where} has type {kind!r}: dspex.LM takes content parts of type {', '.join(PART_TYPES)}")
    if kind != "text" and role != "user":
        raise ConfigError(f"{where} is a {kind!r} part in a {role!r} message: only user messages carry images, "
                          "audio and files (other roles take text)")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ConfigError(f"{where}: a 'text' part needs 'text': str, got {part.get('text')!r:.100}")
        return dict(part)
    if kind == "image_url":
        image = part.get("image_url")
        image = {"url": image} if isinstance(image, str) else image
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str):
            raise ConfigError(f"{where}: an 'image_url' part needs 'image_url': {{'url': str}}, got {image!r:.100}")
        if url.startswith("data:"):
            found = parse_data_url(url)
            if found is None or not found[0].startswith("image/") or not _is_base64(found[1]):
                raise ConfigError(f"{where}: the image's data URL is not 'data:image/<type>;base64,<base64 data>' "
                                  f"({url[:40]!r}...)")
        elif not re.match(r"https?://\S+$", url):
            raise ConfigError(f"{where}: an image URL must be http(s):// or a base64 data URL, got {url[:60]!r}")
        detail = image.get("detail")
        if detail is not None and detail not in ("auto", "low", "high"):
            raise ConfigError(f"{where}: image detail must be 'auto', 'low' or 'high', got {detail!r}")
        return {**part, "image_url": dict(image)}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if (not isinstance(audio, dict) or not _is_base64(audio.get("data"))
                or not isinstance(audio.get("format"), str) or not audio["format"]):
            raise ConfigError(f"{where}: an 'input_audio' part needs 'input_audio': {{'data': <base64>, "
                              f"'format': 'wav' | 'mp3' | ...}}")
        return {**part, "input_audio": dict(audio)}
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, dict) or not (file.get("file_data") or file.get("file_id")):
            raise ConfigError(f"{where}: a 'file' part needs 'file': {{'file_data': 'data:<mime>;base64,...'}} or "
                              "{'file_id': str} (and optionally 'filename')")
        data = file.get("file_data")
        if data is not None and (parse_data_url(data) is None or not _is_base64(parse_data_url(data)[1])):
            raise ConfigError(f"{where}: file_data must be a base64 data URL 'data:<mime>;base64,...'")
        for key in ("file_id", "filename"):
            if file.get(key) is not None and not isinstance(file[key], str):
                raise ConfigError(f"{where}: {key} must be a string, got {file[key]!r:.60}")
        return {**part, "file": dict(file)}
    source = part.get("source")  # "document": Anthropic's own block (dspex.Document renders it)
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise ConfigError(f"{where}: a 'document' part needs 'source': {{'type': ..., ...}}")
    return dict(part)


def check_content(content: Any, where: str, role: str) -> str | list[dict]:
    """A message's content: a string, or a non-empty list of content parts (each checked)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        return [_check_part(p, f"{where} part {j}", role) for j, p in enumerate(content)]
    raise ConfigError(f"{where} content must be a string or a non-empty list of content parts, got {content!r:.200}")


def _check_tool_calls(calls: Any, where: str) -> list[dict]:
    """An assistant message's tool calls, as chat completions has them (``arguments`` made a JSON string)."""
    if not isinstance(calls, list) or not calls:
        raise ConfigError(f"{where} tool_calls must be a non-empty list of {{'id', 'type': 'function', 'function': "
                          "{'name', 'arguments'}}}")
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(function, dict) or not isinstance(call.get("id"), str) or not call["id"]
                or not isinstance(function.get("name"), str) or not function["name"]):
            raise ConfigError(f"{where} tool call {j} must be {{'id': str, 'type': 'function', 'function': "
                              f"{{'name': str, 'arguments': JSON object}}}}, got {call!r:.200}")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            try:
                decoded = json.loads(arguments or "{}")
            except ValueError:
                decoded = None
            if not isinstance(decoded, dict):
                raise ConfigError(f"{where} tool call {j}: arguments must be a JSON object, got {arguments!r:.100}")
        elif isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        else:
            raise ConfigError(f"{where} tool call {j}: arguments must be a JSON object, got {arguments!r:.100}")
        out.append({"id": call["id"], "type": "function",
                    "function": {"name": function["name"], "arguments": arguments}})
    return out


MESSAGE_ROLES = ("system", "user", "assistant", "tool")


def check_message(m: Any, i: int) -> dict:
    """Message ``i`` checked and copied with the keys dspex sends: ``role``, ``content``, and an assistant's
    ``tool_calls`` / a tool result's ``tool_call_id`` (and ``name``)."""
    where = f"message {i}"
    if not isinstance(m, dict) or m.get("role") not in MESSAGE_ROLES:
        raise ConfigError(f"{where} must be {{'role': one of {MESSAGE_ROLES}, 'content': str or content parts}}, "
                          f"got {m!r:.200}")
    role = m["role"]
    if role == "assistant" and m.get("tool_calls"):
        content = m.get("content")
        out = {"role": role, "content": None if content in (None, "") else check_content(content, where, role),
               "tool_calls": _check_tool_calls(m["tool_calls"], where)}
        return out
    if role == "tool":
        if not isinstance(m.get("tool_call_id"), str) or not m["tool_call_id"]:
            raise ConfigError(f"{where} (a tool result) needs 'tool_call_id': the id of the call it answers")
        out = {"role": role, "tool_call_id": m["tool_call_id"], "content": check_content(m.get("content"), where, role)}
        if isinstance(m.get("name"), str):
            out["name"] = m["name"]
        return out
    return {"role": role, "content": check_content(m.get("content"), where, role)}


def content_text(content: Any) -> str:
    """The text of a content (a string, or its text parts joined); None is empty."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """The prompt's token estimate for admission: text at four characters a token, each image
    :data:`IMAGE_TOKENS`, each other non-text part :data:`MEDIA_TOKENS`, tool calls by their JSON."""
    chars, fixed = 0, 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    chars += len(part.get("text", ""))
                elif kind == "document" and (part.get("source") or {}).get("type") == "text":
                    chars += len(str((part.get("source") or {}).get("data", "")))
                else:
                    fixed += IMAGE_TOKENS if kind == "image_url" else MEDIA_TOKENS
        elif content is not None:
            chars += len(content)
        for call in m.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return chars // 4 + fixed


def _unsupported(cfg: LMConfig, wire: str, what: str) -> ConfigError:
    return ConfigError(f"provider {cfg.provider!r} ({wire} wire format) cannot take {what}")


def _tool_functions(cfg: LMConfig, wire: str, tools: Any) -> list[dict]:
    """``tools`` as chat completions has them (DSPy's adapters pass them so) → their functions."""
    if not isinstance(tools, list):
        raise ConfigError(f"tools must be a list of {{'type': 'function', 'function': {{'name', 'description', "
                          f"'parameters'}}}}, got {tools!r:.100}")
    out = []
    for j, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type", "function") != "function":
            raise _unsupported(cfg, wire, f"a tool of type {tool.get('type')!r} (only function tools)")
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ConfigError(f"tool {j} must be {{'type': 'function', 'function': {{'name': str, 'description': "
                              f"str, 'parameters': JSON schema}}}}, got {tool!r:.200}")
        out.append(function)
    return out


def _forced_tool(choice: Any) -> str | None:
    """The function name a ``tool_choice`` forces (``{"type": "function", "function": {"name": ...}}``)."""
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        return name if isinstance(name, str) else None
    return None


def _tool_names(messages: list[dict]) -> dict[str, str]:
    """Each tool call id in the history → the function it called (for formats whose results name it)."""
    return {call["id"]: call["function"]["name"] for m in messages for call in m.get("tool_calls") or ()}


def openai_calls(calls: list[dict]) -> list[dict]:
    """Tool calls as chat completions has them, from ``{"id", "name", "arguments"}`` (a missing id becomes
    ``call_<i>``, empty arguments ``{}``)."""
    return [{"id": c.get("id") or f"call_{i}", "type": "function",
             "function": {"name": c.get("name") or "", "arguments": c.get("arguments") or "{}"}}
            for i, c in enumerate(calls)]


def _json_args(args: Any) -> str:
    if not isinstance(args, dict):
        raise WireError(f"a tool call's arguments are a {type(args).__name__}, not an object")
    return json.dumps(args, ensure_ascii=False)
