"""Wire formats: how a provider wants a chat request, and where its answer and token counts are.

A provider's entry in the registry (``dspex/providers.py``) names its wire format; this module holds
one stateless class per format (``WireFormat`` subclasses), found by name in :data:`WIRE_FORMATS`. One
format is not chat: ``colbert``, a ColBERTv2 search server (``dspex.ColBERTv2``'s searches, on the same pipeline).

Messages come in the chat-completions shape (content parts, ``tool_calls``, ``role: "tool"`` results, checked
by :func:`check_message`); ``tools`` / ``tool_choice`` in OpenAI's function shape. Each format renders them as
its provider's (Anthropic image/document/tool_use/tool_result blocks, Gemini inline_data/file_data/
functionCall/functionResponse parts) and gives an answer's tool calls back in OpenAI's shape, as the
``tool_calls`` extra, streamed or whole.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import math
import mimetypes
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import urlencode

from supervision.resilience.adaptive import Advert, RateHints

from ..errors import ConfigError
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


WIRE_FORMATS: dict[str, WireFormat] = {w.name: w for w in (OpenAI(), Anthropic(), Gemini(), Local(), ColBERT())}


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


__all__ = ["WireFormat", "OpenAI", "Anthropic", "Gemini", "Local", "ColBERT", "WIRE_FORMATS", "wire_for", "Parsed",
           "WireError", "StreamDelta", "check_message", "check_content", "content_text", "estimate_prompt_tokens",
           "openai_calls", "parse_data_url", "IMAGE_TOKENS", "MEDIA_TOKENS", "PART_TYPES", "MESSAGE_ROLES",
           "token_count", "MAX_TOKEN_COUNT", "parse_duration", "parse_retry_after", "parse_timestamp"]
