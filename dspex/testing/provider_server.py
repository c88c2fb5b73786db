"""A fault-injecting LM provider simulator: a real HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks three wire formats on one port:

* OpenAI chat completions   ``POST /v1/chat/completions``                (``Authorization: Bearer``)
* Anthropic messages        ``POST /v1/messages``                         (``x-api-key``)
* Gemini generateContent    ``POST /v1beta/models/{model}:generateContent`` (``x-goog-api-key`` or ``?key=``)

and two APIs that are not chat: OpenAI embeddings (``POST /v1/embeddings``) and a ColBERTv2 search server
(``GET /colbert?query=...&k=...`` or ``POST /colbert``, also at ``/``, over ``ProviderServer(passages=[...])``:
see :mod:`dspex.testing.colbert_sim`).

Each streams as its provider does (server-sent events) when asked: ``"stream": true`` (OpenAI, with the
usage in a last chunk if ``stream_options.include_usage``; Anthropic) or ``:streamGenerateContent`` (Gemini).

Answers come from a scriptable ``answer`` function (a string, or a :class:`SimAnswer` with tool calls, which
each format renders and streams as its provider does); token counts are the server's own (a word/punctuation
count, plus ``SIM_MEDIA_TOKENS`` per image, audio clip or file), so a test can compare a client's ledger with
the server's. Each route checks content parts (images, audio, files), tool declarations and tool history in
its provider's shape and answers 400 to a malformed one, as the provider would. Faults (see :class:`Faults`) are drawn
per request. Every request is logged (arrival time, headers with secrets removed, body, status sent).
This is a test double of a *provider*, never a stand-in for a model: it is not used by the demo.

    with ProviderServer(answer=lambda req: "Paris", faults=Faults(error_rates={500: 0.2})) as server:
        lm = dspex.LM("openai/gpt-4o-mini", base_url=server.base_url("openai"), api_key="sk-test")

Run it alone: ``python -m dspex.testing.provider_server --latency 0.05 --error 500:0.2``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
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

from . import colbert_sim
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
class SimToolCall:
    """One tool call the simulated model makes: the function's ``name`` and its ``args`` (an ``id`` is made
    up when empty: ``call_<n>`` / ``toolu_<n>``; Gemini's calls carry none, as Gemini's do not)."""

    name: str
    args: dict = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class SimAnswer:
    """What an ``answer`` function may return instead of a string: text and/or tool calls, rendered in each
    provider's format (OpenAI ``tool_calls``, Anthropic ``tool_use`` blocks, Gemini ``functionCall`` parts),
    streamed as each streams them."""

    text: str = ""
    tool_calls: tuple[SimToolCall, ...] = ()
    # the model's thinking, shown as each provider shows it when the request asks for it (Anthropic's
    # ``thinking`` block, Gemini's thought part with ``includeThoughts``; OpenAI-compatible servers'
    # ``reasoning_content`` always, as DeepSeek's does); it counts as completion tokens
    reasoning: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))


SIM_MEDIA_TOKENS = 100  # the simulator's prompt tokens for each image, audio clip, file or document


@dataclass(frozen=True)
class SimRequest:
    """A parsed request, as the ``answer`` function sees it. ``messages`` hold each turn's text (``role``,
    ``content``), an assistant's ``tool_calls`` (``[{"id", "name", "args"}]``), and tool results as
    ``role: "tool"`` turns (``tool_call_id``, ``name`` where the format says them); ``parts`` are the
    non-text content parts, each ``{"kind": "image" | "audio" | "file" | "document", "source": "base64" |
    "url" | "file", "mime_type", "role"}``; ``tools`` the declared functions (``name``, ``description``,
    ``parameters``) and ``tool_choice`` the format's own."""

    provider: str
    model: str
    messages: list[dict]
    system: str
    params: dict
    parts: tuple[dict, ...] = ()
    tools: tuple[dict, ...] = ()
    tool_choice: Any = None

    @property
    def tool_results(self) -> list[dict]:
        return [m for m in self.messages if m["role"] == "tool"]

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
    method: str = "POST"


def _echo(req: SimRequest) -> str:
    return f"echo: {req.last_user}"


@dataclass
class _State:
    answer: Callable[[SimRequest], "str | SimAnswer"]
    plan: FaultPlan
    api_key: str | None
    log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    peak: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    limits: LimitState | None = None
    stream_delay: float = 0.0
    passages: tuple[str, ...] = colbert_sim.DEFAULT_PASSAGES  # the ColBERT route's corpus


class ProviderServer:
    """The simulator as a context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, answer: Callable[[SimRequest], str | SimAnswer] | str | None = None,
                 faults: Faults | None = None,
                 *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, stream_delay: float = 0.0,
                 passages: list[str] | tuple[str, ...] | None = None) -> None:
        """``answer``: a fixed string, or a function of the :class:`SimRequest` returning the text or a
        :class:`SimAnswer` (text and/or tool calls). ``stream_delay``: seconds between the events of a
        streamed answer (a stream that visibly streams). ``passages``: the ColBERT route's corpus (default
        ``colbert_sim.DEFAULT_PASSAGES``); a passage's ``pid`` is its index."""
        if isinstance(answer, str):
            fixed = answer
            answer = lambda _req: fixed  # noqa: E731 - a constant answer
        self._state = _State(answer or _echo, FaultPlan(faults or Faults()), api_key,
                             limits=LimitState(limits) if limits is not None else None, stream_delay=stream_delay)
        if passages is not None:
            self._state.passages = tuple(str(p) for p in passages)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.state = self._state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str = "openai") -> str:
        """The ``base_url`` a client of ``provider`` should use."""
        return {"openai": f"{self.url}/v1", "anthropic": self.url, "gemini": self.url,
                "colbert": f"{self.url}/colbert"}[provider]

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

    do_GET = do_POST  # noqa: N815 - stdlib's name; only the ColBERT route answers a GET (its search)

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
        if self.command == "GET":  # a search's parameters are its query string
            body = {name: values[0] for name, values in parse_qs(split.query).items()}
        entry = LoggedRequest(time.time(), provider or "?", split.path, headers, body, fault=fault,
                              method=self.command)
        with state.lock:
            state.log.append(entry)
        if latency:
            state.stopping.wait(latency)
        if provider is None:
            return self._send_json(entry, 404, {"error": {"message": f"no route {split.path}", "type": "not_found"}})
        if self.command == "GET" and provider != "colbert":
            return self._send_json(entry, 405, _error_body(provider, 405, f"{split.path} takes POST"))
        presented = self._key(provider, query_key)
        # ColBERT takes no key; the others' 401 echoes the key, as some providers do
        if state.api_key is not None and provider != "colbert" and presented != state.api_key:
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
        if provider == "colbert":
            return self._send_colbert(entry, body, fault, state)
        try:
            req = _parse(provider, model, body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return self._send_json(entry, 400, _error_body(provider, 400, f"bad request: {exc}"))
        answer = state.answer(req)
        answer = answer if isinstance(answer, SimAnswer) else SimAnswer(str(answer))
        text, calls = answer.text, _call_ids(provider, answer.tool_calls)
        reasoning = answer.reasoning if _shows_thinking(provider, body) else ""
        prompt_tokens = count_tokens(req.prompt_text) + SIM_MEDIA_TOKENS * len(req.parts)
        completion_tokens = (count_tokens(text) + count_tokens(reasoning)
                             + sum(count_tokens(c.name + json.dumps(c.args)) for c in calls))
        limit_headers: dict = {}
        if state.limits is not None:
            admission = state.limits.admit(provider, prompt_tokens + completion_tokens)
            limit_headers = admission.headers
            if not admission.allowed:
                entry.fault = "rate_limit"
                return self._send_rate_limited(entry, provider, admission.retry_after, limit_headers)
        entry.prompt_tokens, entry.completion_tokens = prompt_tokens, completion_tokens
        payload = json.dumps(_render(provider, req.model, text, entry.prompt_tokens, entry.completion_tokens,
                                     calls, reasoning)).encode()
        if _wants_stream(provider, split.path, body):
            events = _stream_events(provider, req.model, text, prompt_tokens, completion_tokens,
                                    bool((body.get("stream_options") or {}).get("include_usage")), calls)
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
        if path.rstrip("/") in ("/colbert", ""):  # "/" too: DSPy's ColBERTv2(url="http://host", port=...)
            return "colbert", ""
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

    def _send_colbert(self, entry: LoggedRequest, body: Any, fault: str, state: _State) -> None:
        """A ColBERT search (``colbert_sim``), with the server's limits and the malformed / truncate faults."""
        try:
            answer = colbert_sim.answer(state.passages, body)
        except colbert_sim.BadSearch as exc:
            return self._send_json(entry, 400, colbert_sim.error_body(str(exc)))
        if state.limits is not None:
            admission = state.limits.admit("colbert", 0)
            if not admission.allowed:
                entry.fault = "rate_limit"
                return self._send_rate_limited(entry, "colbert", admission.retry_after, {})
        payload = json.dumps(answer).encode()
        if fault == "malformed":
            payload = b'{"query": "x", "topk": [{"text": ' + payload[:20]
        if fault == "truncate":
            self._send_raw(entry, 200, payload[: len(payload) // 2], {"Content-Type": "application/json"},
                           declared_length=len(payload))
            self.close_connection = True
            return None
        return self._send_raw(entry, 200, payload, {"Content-Type": "application/json"})

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
            elif provider == "gemini":
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


def _parse(provider: str, model: str, body: dict) -> SimRequest:
    if provider == "openai":
        return _parse_openai(body)
    if provider == "anthropic":
        return _parse_anthropic(body)
    return _parse_gemini(model, body)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


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
    parts = [{"text": reasoning, "thought": True}] if reasoning else []
    parts += [{"text": text}] if text or not calls else []
    parts += [{"functionCall": {**({"id": c.id} if c.id else {}), "name": c.name, "args": c.args}} for c in calls]
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
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
