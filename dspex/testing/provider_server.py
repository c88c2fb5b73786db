"""A fault-injecting LM provider simulator: a real HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks three wire formats on one port:

* OpenAI chat completions   ``POST /v1/chat/completions``                (``Authorization: Bearer``)
* Anthropic messages        ``POST /v1/messages``                         (``x-api-key``)
* Gemini generateContent    ``POST /v1beta/models/{model}:generateContent`` (``x-goog-api-key`` or ``?key=``)

Each streams as its provider does (server-sent events) when asked: ``"stream": true`` (OpenAI, with the
usage in a last chunk if ``stream_options.include_usage``; Anthropic) or ``:streamGenerateContent`` (Gemini).

Answers come from a scriptable ``answer`` function; token counts are the server's own (a word/punctuation
count), so a test can compare a client's ledger with the server's. Faults (see :class:`Faults`) are drawn
per request. Every request is logged (arrival time, headers with secrets removed, body, status sent).
This is a test double of a *provider*, never a stand-in for a model: it is not used by the demo.

    with ProviderServer(answer=lambda req: "Paris", faults=Faults(error_rates={500: 0.2})) as server:
        lm = dspex.LM("openai/gpt-4o-mini", base_url=server.base_url("openai"), api_key="sk-test")

Run it alone: ``python -m dspex.testing.provider_server --latency 0.05 --error 500:0.2``.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .faults import FaultPlan, Faults
from .limits import LimitState, ServerLimits

SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie")
_GEMINI = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")


EMBED_DIM = 64


def embed_text(text: str) -> list[float]:
    """The simulator's embedding: hashed bag of lower-cased words, unit length (texts sharing words are
    near each other: deterministic, documented, enough to test nearest-neighbour demos)."""
    import hashlib
    import math

    vector = [0.0] * EMBED_DIM
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % EMBED_DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: words and punctuation marks (deterministic, documented)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass(frozen=True)
class SimRequest:
    """A parsed request, as the ``answer`` function sees it."""

    provider: str
    model: str
    messages: list[dict]
    system: str
    params: dict

    @property
    def prompt_text(self) -> str:
        return "\n".join([self.system, *(m["content"] for m in self.messages)]).strip()

    @property
    def last_user(self) -> str:
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""


@dataclass
class LoggedRequest:
    """One request as the server saw it: ``at`` is ``time.time()`` on arrival; secrets are removed."""

    at: float
    provider: str
    path: str
    headers: dict
    body: Any
    status: int = 0
    fault: str = "ok"
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _echo(req: SimRequest) -> str:
    return f"echo: {req.last_user}"


@dataclass
class _State:
    answer: Callable[[SimRequest], str]
    plan: FaultPlan
    api_key: str | None
    log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    peak: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    limits: LimitState | None = None
    stream_delay: float = 0.0


class ProviderServer:
    """The simulator as a context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, answer: Callable[[SimRequest], str] | str | None = None, faults: Faults | None = None,
                 *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, stream_delay: float = 0.0) -> None:
        """``stream_delay``: seconds between the events of a streamed answer (a stream that visibly streams)."""
        if isinstance(answer, str):
            fixed = answer
            answer = lambda _req: fixed  # noqa: E731 - a constant answer
        self._state = _State(answer or _echo, FaultPlan(faults or Faults()), api_key,
                             limits=LimitState(limits) if limits is not None else None, stream_delay=stream_delay)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.state = self._state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str = "openai") -> str:
        """The ``base_url`` a client of ``provider`` should use."""
        return {"openai": f"{self.url}/v1", "anthropic": self.url, "gemini": self.url}[provider]

    # --- control ---------------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._state.lock:
            self._state.plan = FaultPlan(faults)

    def set_limits(self, limits: ServerLimits | None) -> None:
        """Enforce (and advertise) new rate limits from now on; None lifts them."""
        self._state.limits = LimitState(limits) if limits is not None else None

    def throttled(self) -> list[LoggedRequest]:
        """Requests refused by the server's own rate limits (429)."""
        return [r for r in self.log if r.fault == "rate_limit"]

    @property
    def log(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.log)

    def clear_log(self) -> None:
        with self._state.lock:
            self._state.log.clear()
            self._state.peak = self._state.in_flight

    @property
    def peak_concurrency(self) -> int:
        """Most requests being handled at once since start (or the last ``clear_log``)."""
        return self._state.peak

    def successes(self) -> list[LoggedRequest]:
        """Requests answered 200 with a complete, valid body (what a client may bill)."""
        return [r for r in self.log if r.status == 200 and r.fault == "ok"]

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "ProviderServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="provider-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._state.stopping.set()  # hanging handlers give up at once
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> "ProviderServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    state: _State

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close the kept-alive connections too, so their handler threads end."""
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Quiet: the request log is the record."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        state = self.server.state
        with state.lock:
            state.in_flight += 1
            state.peak = max(state.peak, state.in_flight)
        try:
            self._serve(state)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _serve(self, state: _State) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        split = urlsplit(self.path)
        provider, model = self._route(split.path)
        headers = {k.lower(): ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()}
        query_key = parse_qs(split.query).get("key", [None])[0]
        with state.lock:
            fault = state.plan.next_fault()
            latency = state.plan.next_latency()
            faults = state.plan.faults
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = LoggedRequest(time.time(), provider or "?", split.path, headers, body, fault=fault)
        with state.lock:
            state.log.append(entry)
        if latency:
            state.stopping.wait(latency)
        if provider is None:
            return self._send_json(entry, 404, {"error": {"message": f"no route {split.path}", "type": "not_found"}})
        presented = self._key(provider, query_key)
        if state.api_key is not None and presented != state.api_key:  # echoes the key, as some providers do
            return self._send_json(entry, 401, _error_body(provider, 401, f"Incorrect API key provided: {presented}"))
        if fault == "hang":
            state.stopping.wait(faults.hang_s)
            entry.status = -1
            self.close_connection = True
            return None
        if fault == "reset":
            entry.status = -1
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        if fault.isdigit():
            return self._send_error_status(entry, provider, int(fault), faults)
        if provider == "embeddings":
            return self._send_embeddings(entry, body)
        try:
            req = _parse(provider, model, body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return self._send_json(entry, 400, _error_body(provider, 400, f"bad request: {exc}"))
        text = state.answer(req)
        prompt_tokens, completion_tokens = count_tokens(req.prompt_text), count_tokens(text)
        limit_headers: dict = {}
        if state.limits is not None:
            admission = state.limits.admit(provider, prompt_tokens + completion_tokens)
            limit_headers = admission.headers
            if not admission.allowed:
                entry.fault = "rate_limit"
                return self._send_rate_limited(entry, provider, admission.retry_after, limit_headers)
        entry.prompt_tokens, entry.completion_tokens = prompt_tokens, completion_tokens
        payload = json.dumps(_render(provider, req.model, text, entry.prompt_tokens, entry.completion_tokens)).encode()
        if _wants_stream(provider, split.path, body):
            events = _stream_events(provider, req.model, text, prompt_tokens, completion_tokens,
                                    bool((body.get("stream_options") or {}).get("include_usage")))
            if fault == "malformed":
                events = [*events[:len(events) // 2], b"data: {not json\n\n"]
            return self._send_stream(entry, events, limit_headers, state, cut=fault == "truncate")
        if fault == "malformed":
            payload = b'{"id": "x", "choices": [{"message": ' + payload[:20]
        if fault == "truncate":
            self._send_raw(entry, 200, payload[: len(payload) // 2], {"Content-Type": "application/json"},
                           declared_length=len(payload))
            self.close_connection = True
            return None
        self._send_raw(entry, 200, payload, {"Content-Type": "application/json", **limit_headers})
        return None

    def _send_stream(self, entry: LoggedRequest, events: list[bytes], headers: dict, state: _State,
                     cut: bool = False) -> None:
        """Server-sent events in HTTP/1.1 chunks, one event a chunk (``stream_delay`` s between them);
        ``cut``: the connection closes half way (a truncated stream)."""
        entry.status = 200
        lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache",
                 "Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in headers.items())]
        try:
            self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            for event in events[:len(events) // 2] if cut else events:
                if state.stream_delay:
                    state.stopping.wait(state.stream_delay)
                self.connection.sendall(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            if cut:
                self.close_connection = True
                return
            self.connection.sendall(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    # --- helpers ---------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str | None, str]:
        if path == "/v1/chat/completions":
            return "openai", ""
        if path == "/v1/embeddings":
            return "embeddings", ""
        if path == "/v1/messages":
            return "anthropic", ""
        match = _GEMINI.match(path)
        if match:
            return "gemini", match.group("model")
        return None, ""

    def _send_embeddings(self, entry: LoggedRequest, body: Any) -> None:
        texts = body.get("input") if isinstance(body, dict) else None
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._send_json(entry, 400, _error_body("openai", 400, "input must be a string or strings"))
        entry.prompt_tokens = sum(count_tokens(t) for t in texts)
        data = [{"object": "embedding", "index": i, "embedding": embed_text(t)} for i, t in enumerate(texts)]
        return self._send_json(entry, 200, {"object": "list", "data": data, "model": body.get("model", "sim"),
                                            "usage": {"prompt_tokens": entry.prompt_tokens,
                                                      "total_tokens": entry.prompt_tokens}})

    def _key(self, provider: str, query_key: str | None) -> str | None:
        if provider in ("openai", "embeddings"):
            auth = self.headers.get("Authorization", "")
            return auth[7:] if auth.startswith("Bearer ") else None
        if provider == "anthropic":
            return self.headers.get("x-api-key")
        return self.headers.get("x-goog-api-key") or query_key

    def _send_error_status(self, entry: LoggedRequest, provider: str, status: int, faults: Faults) -> None:
        headers = {"Content-Type": "application/json"}
        body = _error_body(provider, status, "simulated failure")
        if status in (429, 503) and faults.retry_after is not None:
            ra = faults.retry_after
            headers["Retry-After"] = (email.utils.formatdate(time.time() + ra, usegmt=True)
                                      if faults.retry_after_format == "date" else f"{ra:g}")
            if provider == "openai":
                headers["x-ratelimit-reset-requests"] = f"{ra:g}s"
            elif provider == "anthropic":
                reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ra))
                headers["anthropic-ratelimit-requests-reset"] = reset
            else:
                body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                             "retryDelay": f"{ra:g}s"}]
        self._send_raw(entry, status, json.dumps(body).encode(), headers)

    def _send_rate_limited(self, entry: LoggedRequest, provider: str, wait: float, headers: dict) -> None:
        body = _error_body(provider, 429, "rate limit exceeded: slow down")
        if provider == "gemini":
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                         "retryDelay": f"{wait:.3f}s"}]
        self._send_raw(entry, 429, json.dumps(body).encode(),
                       {"Content-Type": "application/json", "Retry-After": f"{wait:.3f}", **headers})

    def _send_json(self, entry: LoggedRequest, status: int, body: dict) -> None:
        self._send_raw(entry, status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _send_raw(self, entry: LoggedRequest, status: int, payload: bytes, headers: dict,
                  declared_length: int | None = None) -> None:
        """Status line, headers and body in one send (no Nagle / delayed-ACK stall on keep-alive)."""
        entry.status = status
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 f"Content-Length: {declared_length if declared_length is not None else len(payload)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        try:
            self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        except OSError:
            self.close_connection = True  # the client went away (e.g. its timeout fired)


def _parse(provider: str, model: str, body: dict) -> SimRequest:
    if provider == "openai":
        msgs = [{"role": m["role"], "content": _text(m["content"])} for m in body["messages"]]
        system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
        params = {k: v for k, v in body.items() if k not in ("messages", "model")}
        return SimRequest("openai", body["model"], [m for m in msgs if m["role"] != "system"], system, params)
    if provider == "anthropic":
        msgs = [{"role": m["role"], "content": _text(m["content"])} for m in body["messages"]]
        if "max_tokens" not in body:
            raise ValueError("max_tokens is required")
        params = {k: v for k, v in body.items() if k not in ("messages", "model", "system")}
        return SimRequest("anthropic", body["model"], msgs, _text(body.get("system", "")), params)
    msgs = [{"role": "assistant" if c.get("role") == "model" else "user",
             "content": "".join(p["text"] for p in c["parts"])} for c in body["contents"]]
    system = "".join(p["text"] for p in (body.get("systemInstruction") or {}).get("parts", []))
    return SimRequest("gemini", model, msgs, system, dict(body.get("generationConfig") or {}))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


def _render(provider: str, model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict:
    if provider == "openai":
        return {"id": "chatcmpl-sim", "object": "chat.completion", "created": int(time.time()), "model": model or "sim",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
    if provider == "anthropic":
        return {"id": "msg_sim", "type": "message", "role": "assistant", "model": model or "sim",
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                              "totalTokenCount": prompt_tokens + completion_tokens}, "modelVersion": model}


def _wants_stream(provider: str, path: str, body: Any) -> bool:
    if provider == "gemini":
        return path.endswith(":streamGenerateContent")
    return isinstance(body, dict) and body.get("stream") is True


def _pieces(text: str) -> list[str]:
    """The answer in pieces of about three words (each whitespace run stays with its word)."""
    words = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(words[i:i + 3]) for i in range(0, len(words), 3)]


def _stream_events(provider: str, model: str, text: str, prompt_tokens: int, completion_tokens: int,
                   include_usage: bool) -> list[bytes]:
    """The answer as the provider's server-sent events."""
    def sse(data: Any, event: str | None = None) -> bytes:
        return ((f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n").encode()

    model = model or "sim"
    if provider == "openai":
        chunk = {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        out = [sse({**chunk, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
               for p in _pieces(text)]
        out.append(sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if include_usage:
            out.append(sse({**chunk, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                              "completion_tokens": completion_tokens,
                                                              "total_tokens": prompt_tokens + completion_tokens}}))
        return [*out, b"data: [DONE]\n\n"]
    if provider == "anthropic":
        return [sse({"type": "message_start", "message": {"id": "msg_sim", "type": "message", "role": "assistant",
                                                          "model": model, "content": [],
                                                          "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}},
                    "message_start"),
                sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start"),
                *(sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                      "content_block_delta") for p in _pieces(text)),
                sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                     "usage": {"output_tokens": completion_tokens}}, "message_delta"),
                sse({"type": "message_stop"}, "message_stop")]
    pieces = _pieces(text)
    out = []
    for i, piece in enumerate(pieces):
        data: dict = {"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
                      "modelVersion": model}
        if i == len(pieces) - 1:
            data["candidates"][0]["finishReason"] = "STOP"
            data["usageMetadata"] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                                     "totalTokenCount": prompt_tokens + completion_tokens}
        out.append(sse(data))
    return out


def _error_body(provider: str, status: int, message: str) -> dict:
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "api_error" if status >= 500 else "invalid_request_error",
                                           "message": message}}
    if provider == "gemini":
        return {"error": {"code": status, "message": message, "status": "UNAVAILABLE" if status >= 500 else "INVALID"}}
    kind = "server_error" if status >= 500 else "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``--duration``); print the URL on the first line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless testing hosts)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--error", action="append", default=[], metavar="STATUS:RATE", help="e.g. 500:0.2")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--answer", default=None, help="a fixed answer (default: echo the last user message)")
    parser.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rpm", type=float, default=None, help="enforce and advertise this many requests a minute")
    parser.add_argument("--tpm", type=float, default=None, help="enforce and advertise this many tokens a minute")
    args = parser.parse_args(argv)
    rates = {int(s): float(r) for s, r in (e.split(":") for e in args.error)}
    faults = Faults(error_rates=rates, latency=args.latency, retry_after=args.retry_after, seed=args.seed)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    limits = ServerLimits(args.rpm, args.tpm) if args.rpm or args.tpm else None
    with ProviderServer(args.answer, faults, host=args.host, port=args.port, limits=limits) as server:
        print(server.url, flush=True)
        done.wait(args.duration)


if __name__ == "__main__":
    main()
