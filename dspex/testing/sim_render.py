"""How the provider simulator answers: an answer, an error or a stream, in each provider's format.

A whole answer (:func:`_render`: OpenAI ``chat.completion``, Anthropic ``message``, Gemini candidates, Bedrock's
Converse, Ollama's), its stream when streamed (:func:`_stream_events`: server-sent events, Ollama's JSON lines,
Bedrock's AWS event stream), the error bodies (:func:`_error_body`), and the
choices a request makes about them (tool call ids, whether thinking is shown, whether to stream).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from . import aws_eventstream, colbert_sim
from .sim_types import SimToolCall


def _call_ids(provider: str, calls: tuple[SimToolCall, ...]) -> tuple[SimToolCall, ...]:
    """The calls with their ids: the answer's own, else made up as each provider makes them (none for Gemini)."""
    prefix = {"openai": "call_sim", "anthropic": "toolu_sim"}.get(provider)
    return tuple(c if c.id or prefix is None else SimToolCall(c.name, dict(c.args), f"{prefix}{i}")
                 for i, c in enumerate(calls))


def _shows_thinking(provider: str, body: Any) -> bool:
    """Whether the provider returns the model's thinking for this request (see SimAnswer.reasoning)."""
    if provider == "anthropic":
        return isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    if provider == "gemini":
        return bool(((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts"))
    return True


def _render(provider: str, model: str, text: str, prompt_tokens: int, completion_tokens: int,
            calls: tuple[SimToolCall, ...] = (), reasoning: str = "") -> dict:
    if provider == "openai":
        message: dict = {"role": "assistant", "content": text if text or not calls else None}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": json.dumps(c.args)}} for c in calls]
        return {"id": "chatcmpl-sim", "object": "chat.completion", "created": int(time.time()), "model": model or "sim",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
    if provider == "anthropic":
        blocks = [{"type": "thinking", "thinking": reasoning, "signature": "sim-signature"}] if reasoning else []
        blocks += [{"type": "text", "text": text}] if text or not calls else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.args} for c in calls]
        return {"id": "msg_sim", "type": "message", "role": "assistant", "model": model or "sim",
                "content": blocks, "stop_reason": "tool_use" if calls else "end_turn",
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}
    if provider == "bedrock":
        return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": prompt_tokens, "outputTokens": completion_tokens,
                          "totalTokens": prompt_tokens + completion_tokens}, "metrics": {"latencyMs": 1}}
    if provider in ("ollama_chat", "ollama"):
        done = {"model": model or "sim", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "done": True, "done_reason": "stop", "prompt_eval_count": prompt_tokens, "eval_count": completion_tokens}
        if provider == "ollama":
            return {**done, "response": text}
        message: dict = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [{"function": {"name": c.name, "arguments": c.args}} for c in calls]
        return {**done, "message": message}
    parts = [{"text": reasoning, "thought": True}] if reasoning else []
    parts += [{"text": text}] if text or not calls else []
    parts += [{"functionCall": {**({"id": c.id} if c.id else {}), "name": c.name, "args": c.args}} for c in calls]
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                              "totalTokenCount": prompt_tokens + completion_tokens}, "modelVersion": model}


def _wants_stream(provider: str, path: str, body: Any) -> bool:
    if provider == "gemini":  # Vertex AI's routes speak Gemini's format
        return path.endswith(":streamGenerateContent")
    if provider == "bedrock":
        return path.endswith("/converse-stream")
    if provider in ("ollama", "ollama_chat"):  # Ollama streams unless told not to
        return isinstance(body, dict) and body.get("stream", True) is not False
    return isinstance(body, dict) and body.get("stream") is True


def _stream_type(provider: str) -> str:
    """The content type of a provider's stream: server-sent events, Ollama's JSON lines, AWS's event stream."""
    if provider in ("ollama", "ollama_chat"):
        return "application/x-ndjson"
    if provider == "bedrock":
        return "application/vnd.amazon.eventstream"
    return "text/event-stream"


def _malformed_event(provider: str) -> bytes:
    """An event that is not the provider's shape, in its framing (the ``malformed`` fault of a stream)."""
    if provider in ("ollama", "ollama_chat"):
        return b"{not json\n"
    if provider == "bedrock":
        return aws_eventstream.message({":event-type": "contentBlockDelta", ":message-type": "event"}, b"{not json")
    return b"data: {not json\n\n"


def _pieces(text: str) -> list[str]:
    """The answer in pieces of about three words (each whitespace run stays with its word)."""
    words = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(words[i:i + 3]) for i in range(0, len(words), 3)]


def _stream_events(provider: str, model: str, text: str, prompt_tokens: int, completion_tokens: int,
                   include_usage: bool, calls: tuple[SimToolCall, ...] = ()) -> list[bytes]:
    """The answer as the provider's server-sent events (tool calls too: OpenAI's and Anthropic's arguments
    arrive in two pieces, Gemini's calls whole in the last chunk)."""
    def sse(data: Any, event: str | None = None) -> bytes:
        return ((f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n").encode()

    def halves(args: dict) -> list[str]:
        encoded = json.dumps(args)
        return [encoded[:len(encoded) // 2], encoded[len(encoded) // 2:]]

    model = model or "sim"
    text_pieces = _pieces(text) if text or not calls else []
    if provider in ("ollama", "ollama_chat"):  # JSON lines: pieces, then one with done and the counts
        whole = _render(provider, model, text, prompt_tokens, completion_tokens, calls)
        key = "response" if provider == "ollama" else "message"
        piece = lambda p: {"model": model, "created_at": whole["created_at"], "done": False,  # noqa: E731
                           key: p if provider == "ollama" else {"role": "assistant", "content": p}}
        out = [json.dumps(piece(p)).encode() + b"\n" for p in text_pieces]
        if calls:  # Ollama sends tool calls whole, in one message of their own
            out.append(json.dumps({**piece(""), "message": {"role": "assistant", "content": "",
                                                            "tool_calls": whole["message"]["tool_calls"]}}).encode()
                       + b"\n")
        last = {**whole, key: "" if provider == "ollama" else {"role": "assistant", "content": ""}}
        return [*out, json.dumps(last).encode() + b"\n"]
    if provider == "bedrock":  # AWS's event stream: ConverseStream's events
        return [aws_eventstream.event("messageStart", {"role": "assistant"}),
                *(aws_eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}})
                  for p in text_pieces),
                aws_eventstream.event("contentBlockStop", {"contentBlockIndex": 0}),
                aws_eventstream.event("messageStop", {"stopReason": "end_turn"}),
                aws_eventstream.event("metadata", {"usage": {"inputTokens": prompt_tokens, "outputTokens": completion_tokens,
                                                             "totalTokens": prompt_tokens + completion_tokens},
                                                   "metrics": {"latencyMs": 1}})]
    if provider == "openai":
        chunk = {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        out = [sse({**chunk, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
               for p in text_pieces]
        for i, c in enumerate(calls):
            first = {"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
            out.append(sse({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [first]},
                                                  "finish_reason": None}]}))
            out += [sse({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {
                "arguments": piece}}]}, "finish_reason": None}]}) for piece in halves(c.args)]
        finish = "tool_calls" if calls else "stop"
        out.append(sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
        if include_usage:
            out.append(sse({**chunk, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                              "completion_tokens": completion_tokens,
                                                              "total_tokens": prompt_tokens + completion_tokens}}))
        return [*out, b"data: [DONE]\n\n"]
    if provider == "anthropic":
        out = [sse({"type": "message_start", "message": {"id": "msg_sim", "type": "message", "role": "assistant",
                                                         "model": model, "content": [],
                                                         "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}},
                   "message_start")]
        index = 0
        if text_pieces:
            out += [sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                        "content_block_start"),
                    *(sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                          "content_block_delta") for p in text_pieces),
                    sse({"type": "content_block_stop", "index": 0}, "content_block_stop")]
            index = 1
        for i, c in enumerate(calls, start=index):
            out.append(sse({"type": "content_block_start", "index": i,
                            "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}},
                           "content_block_start"))
            out += [sse({"type": "content_block_delta", "index": i,
                         "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
                    for piece in halves(c.args)]
            out.append(sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
        return [*out,
                sse({"type": "message_delta", "delta": {"stop_reason": "tool_use" if calls else "end_turn"},
                     "usage": {"output_tokens": completion_tokens}}, "message_delta"),
                sse({"type": "message_stop"}, "message_stop")]
    chunks: list[list[dict]] = [[{"text": piece}] for piece in text_pieces]
    if calls:
        call_parts = [{"functionCall": {**({"id": c.id} if c.id else {}), "name": c.name, "args": c.args}}
                      for c in calls]
        chunks.append(call_parts)
    out = []
    for i, parts in enumerate(chunks):
        data: dict = {"candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
                      "modelVersion": model}
        if i == len(chunks) - 1:
            data["candidates"][0]["finishReason"] = "STOP"
            data["usageMetadata"] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                                     "totalTokenCount": prompt_tokens + completion_tokens}
        out.append(sse(data))
    return out


def _error_body(provider: str, status: int, message: str) -> dict:
    if provider == "colbert":
        return colbert_sim.error_body(message)
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "api_error" if status >= 500 else "invalid_request_error",
                                           "message": message}}
    if provider == "gemini":
        return {"error": {"code": status, "message": message, "status": "UNAVAILABLE" if status >= 500 else "INVALID"}}
    if provider in ("ollama_chat", "ollama"):
        return {"error": message}
    if provider == "bedrock":
        return {"message": message}
    kind = "server_error" if status >= 500 else "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}
