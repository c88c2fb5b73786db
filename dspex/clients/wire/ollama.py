"""``ollama_chat`` and ``ollama``: Ollama's native API (``POST /api/chat`` with messages; ``POST /api/generate``
with one prompt), as LiteLLM's ``ollama_chat/`` and ``ollama/`` prefixes speak it.

Sampling settings go in ``options`` (``max_tokens`` as ``num_predict``); ``response_format`` asking for JSON
is ``"format": "json"``; tools are chat completions' (``/api/chat`` only). The counts are ``prompt_eval_count``
and ``eval_count`` (Ollama leaves out the first when the whole prompt was cached: then 0, and the model is
local, so nothing is billed). A streamed call asks for Ollama's stream: a JSON object a line, each with a
piece of the answer, the last (``"done": true``) with the counts.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import LMConfig, Secret
from .base import Parsed, StreamDelta, WireError, WireFormat, checked, token_count
from .parts import _tool_functions, _unsupported, content_text

OPTIONS = {"temperature": "temperature", "max_tokens": "num_predict", "top_p": "top_p", "top_k": "top_k",
           "stop": "stop", "seed": "seed", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty"}


class OllamaChat(WireFormat):
    name = "ollama_chat"
    path = "/api/chat"
    stream_framing = "ndjson"

    def url(self, cfg: LMConfig) -> str:
        return cfg.base_url.rstrip("/") + self.path

    def headers(self, key: Secret | None) -> dict:
        return {"Authorization": f"Bearer {key.reveal()}"} if key else {}

    def options(self, cfg: LMConfig, params: dict) -> dict:
        """The body's settings: ``options`` and ``format`` from the request's parameters."""
        out: dict[str, Any] = {"stream": False, "options": {}}
        for name, value in params.items():
            if name in OPTIONS:
                out["options"][OPTIONS[name]] = value
            elif name == "response_format":
                if not isinstance(value, dict) or value.get("type") not in ("json_object", "json_schema"):
                    raise _unsupported(cfg, self.name, f"response_format={value!r:.80} (it takes JSON output)")
                schema = (value.get("json_schema") or {}).get("schema")
                out["format"] = schema if isinstance(schema, dict) else "json"
            elif name in ("n", "logprobs", "tool_choice", "parallel_tool_calls", "reasoning_effort"):
                if name == "n" and value == 1:
                    continue
                raise _unsupported(cfg, self.name, f"{name}={value!r:.80}")
            elif name != "tools":
                out["options"][name] = value  # Ollama's own options (num_ctx, repeat_penalty, ...)
        return out

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        turns = []
        for m in messages:
            if isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]):
                raise _unsupported(cfg, self.name, "a content part that is not text")
            turn = {"role": m["role"], "content": content_text(m.get("content"))}
            if m.get("tool_calls"):
                turn["tool_calls"] = [{"function": {"name": c["function"]["name"],
                                                    "arguments": json.loads(c["function"]["arguments"] or "{}")}}
                                      for c in m["tool_calls"]]
            turns.append(turn)
        body = {"model": cfg.model, "messages": turns, **self.options(cfg, params)}
        if "tools" in params:
            _tool_functions(cfg, self.name, params["tools"])
            body["tools"] = params["tools"]
        return body

    def usage(self, body: Any) -> tuple[int, int] | None:
        if not isinstance(body, dict) or "eval_count" not in body:
            return None
        try:
            return token_count("prompt_eval_count", body.get("prompt_eval_count", 0)), token_count(
                "eval_count", body["eval_count"])
        except WireError:
            return None

    @staticmethod
    def counted(text: str, body: dict) -> Parsed:
        """``text`` with the answer's counts (each checked; one Ollama leaves out counts as 0) and model."""
        return checked(text, body.get("prompt_eval_count", 0), body.get("eval_count", 0), body.get("model", ""),
                       ("prompt_eval_count", "eval_count"))

    def parse(self, body: Any) -> Parsed:
        try:
            message = body["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("message.content is not a string")
            parsed = self.counted(text, body)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not an Ollama chat answer ({type(exc).__name__}: {exc})") from None
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"].get("arguments", {}))}}
                 for i, c in enumerate(message.get("tool_calls") or ())]
        extras: tuple = (("tool_calls", calls),) if calls else ()
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            extras += (("reasoning_content", thinking),)
        return Parsed(parsed.text, parsed.prompt_tokens, parsed.completion_tokens, parsed.model, extras)


    def piece(self, data: dict) -> str:
        """The text one line of the stream adds."""
        text = (data.get("message") or {}).get("content") or ""
        if not isinstance(text, str):
            raise TypeError("message.content is not a string")
        return text

    def stream_event(self, data: Any) -> StreamDelta:
        try:
            if data.get("error"):
                raise WireError(f"the stream reported an error: {str(data['error'])[:300]}")
            text = self.piece(data)
            calls = tuple({"index": None, "id": f"call_{i}", "name": c["function"]["name"],
                           "arguments": json.dumps(c["function"].get("arguments", {}))}
                          for i, c in enumerate((data.get("message") or {}).get("tool_calls") or ()))
            if data.get("done"):  # the last line: the counts (checked with the whole answer)
                return StreamDelta(text, data.get("prompt_eval_count", 0), data["eval_count"], data.get("model"), calls)
            return StreamDelta(text, model=data.get("model"), calls=calls)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not a line of Ollama's stream ({type(exc).__name__}: {exc})") from None


class OllamaGenerate(OllamaChat):
    """``/api/generate``: the system message as ``system``, the other turns' texts as one ``prompt``."""

    name = "ollama"
    path = "/api/generate"

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        if "tools" in params:
            raise _unsupported(cfg, self.name, "tools (use ollama_chat/ for tool calls)")
        system = "\n\n".join(content_text(m.get("content")) for m in messages if m["role"] == "system")
        prompt = "\n\n".join(content_text(m.get("content")) for m in messages if m["role"] != "system")
        return {"model": cfg.model, "prompt": prompt, **({"system": system} if system else {}),
                **self.options(cfg, params)}

    def piece(self, data: dict) -> str:
        text = data.get("response") or ""
        if not isinstance(text, str):
            raise TypeError("response is not a string")
        return text

    def parse(self, body: Any) -> Parsed:
        try:
            text = body["response"]
            if not isinstance(text, str):
                raise TypeError("response is not a string")
            return self.counted(text, body)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not an Ollama generate answer ({type(exc).__name__}: {exc})") from None
