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

Run it alone: ``python -m dspex.testing.provider_server --latency 0.05 --error 500:0.2``; a harness in another
process reads its counters at ``GET /_sim/stats`` (requests, in flight, peak, connections, ok; ``?reset=1``).

The pieces: :mod:`dspex.testing.sim_types` (:class:`SimRequest`, :class:`SimAnswer`, :class:`SimToolCall`,
:class:`LoggedRequest`, the token count and the embedding), :mod:`dspex.testing.sim_parse` (each provider's
request read into a :class:`SimRequest`, with its validation rules), :mod:`dspex.testing.sim_render` (answers,
errors and streams in each provider's format); this module holds the server, its state and its routes.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import http
import json
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from . import colbert_sim, google_oauth, sigv4
from .faults import FaultPlan, Faults
from .limits import LimitState, ServerLimits
# the simulator's pieces; every name this module held before they moved stays importable from here
from .sim_parse import (_ANTHROPIC_IMAGES, _GEMINI_SCHEMA_KEYS, _SIM_DATA_URL, _anthropic_blocks, _bad,  # noqa: F401
                        _base64, _check_anthropic_thinking, _data_url, _either, _gemini_schema_check, _http_url,
                        _json_object, _openai_content, _parse, _parse_anthropic, _parse_gemini, _parse_openai, _text)
from .sim_render import (_call_ids, _error_body, _pieces, _render, _shows_thinking, _stream_events,  # noqa: F401
                         _wants_stream, _malformed_event, _stream_type)
from .sim_types import (EMBED_DIM, SIM_MEDIA_TOKENS, LoggedRequest, SimAnswer, SimRequest, SimToolCall,  # noqa: F401
                        count_tokens, embed_text)

STATS_PATH = "/_sim/stats"  # GET: requests, in flight, peak, connections, ok (``?reset=1``: clear the log and peak)
BACKLOG = 16384  # connections the listening socket queues (10,000 clients connecting at once)
MAX_HEAD = 64 * 1024  # bytes of request line and headers; more is a 431
SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "x-amz-security-token")
_GEMINI = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")
_AZURE = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
_BEDROCK = re.compile(r"^/model/(?P<model>[^/]+)/(?:converse|converse-stream)$")
_VERTEX = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/publishers/google/models/(?P<model>[^/:]+)"
                     r":(?P<method>generateContent|streamGenerateContent)$")
# the body and answer format each route speaks (Azure OpenAI's is OpenAI's); the rest speak their own
_FORMAT = {"azure": "openai", "vertex_ai": "gemini"}


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
    tokens: set = field(default_factory=set)  # the OAuth access tokens the token route issued (Vertex AI's)
    conns: set = field(default_factory=set)  # the tasks serving open connections (the loop's thread only)
    wake: Any = None  # an asyncio.Event of the server's loop, set when the server closes


class ProviderServer:
    """The simulator as a context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    exchange: type["_Exchange"]  # what serves a connection (a subclass may answer differently); set below

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
        # bound now (the URL is known before start); served by an asyncio loop on one thread from start()
        self._sock = socket.create_server((host, port), backlog=BACKLOG, reuse_port=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str = "openai") -> str:
        """The ``base_url`` a client of ``provider`` should use (an OpenAI-compatible provider's is OpenAI's;
        Azure OpenAI's and Ollama's are the server's root, as their resources' are)."""
        if provider in ("anthropic", "gemini", "azure", "ollama", "ollama_chat"):
            return self.url
        return f"{self.url}/colbert" if provider == "colbert" else f"{self.url}/v1"

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

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._state.conns)

    def successes(self) -> list[LoggedRequest]:
        """Requests answered 200 with a complete, valid body (what a client may bill)."""
        return [r for r in self.log if r.status == 200 and r.fault == "ok"]

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "ProviderServer":
        """Serve on a thread of its own (an asyncio loop: one task per connection, so thousands of
        connections cost no thread each). Returns once the server accepts connections."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve_forever, args=(ready,), name="provider-server",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def _serve_forever(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        state = self._state
        state.wake = asyncio.Event()

        async def connection(conn: socket.socket) -> None:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
            await self.exchange(state, reader, writer).run()

        def adopt(conn: socket.socket) -> None:
            if state.wake.is_set():
                conn.close()
                return
            task = loop.create_task(connection(conn))
            state.conns.add(task)
            task.add_done_callback(state.conns.discard)

        async def serve() -> None:
            acceptor = threading.Thread(target=self._accept, args=(loop, adopt), name="provider-server-accept",
                                        daemon=True)
            acceptor.start()
            ready.set()
            await state.wake.wait()  # close(): stop accepting, end every connection's task
            for task in list(state.conns):
                task.cancel()
            await asyncio.gather(*state.conns, return_exceptions=True)

        try:
            loop.run_until_complete(serve())
        finally:
            ready.set()
            loop.close()
            self._closed.set()

    def _accept(self, loop: asyncio.AbstractEventLoop, adopt: Callable[[socket.socket], None]) -> None:
        """Take connections off the listening socket as fast as they come, on a thread of its own: while
        the loop is busy answering, the kernel's accept queue (capped by ``net.core.somaxconn``) would
        fill, and a connection it drops waits out a SYN retransmit (1 s, 3 s, 7 s...)."""
        self._sock.settimeout(0.1)
        while not self._state.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:  # the listening socket was closed
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                loop.call_soon_threadsafe(adopt, conn)
            except RuntimeError:  # the loop has closed
                conn.close()
                return

    def close(self) -> None:
        self._state.stopping.set()  # hanging handlers give up at once
        if self._loop is not None and not self._closed.is_set():
            try:
                self._loop.call_soon_threadsafe(self._state.wake.set)
            except RuntimeError:  # the loop has closed already
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> "ProviderServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Closed(Exception):
    """The connection is over (the peer closed it, or a fault or error closes it)."""


class _Exchange:
    """One connection: HTTP/1.1 requests one after another (keep-alive), each answered by the routes."""

    def __init__(self, state: _State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.state, self.reader, self.writer = state, reader, writer
        self.command, self.path = "", ""
        self.headers: _Headers = _Headers([])
        self.close_connection = False

    async def run(self) -> None:
        state = self.state
        try:
            while not self.close_connection:
                if not await self._read_request():
                    return
                counted = not self.path.startswith(STATS_PATH)  # (asking for the counters is not a request)
                with state.lock:
                    state.in_flight += counted
                    state.peak = max(state.peak, state.in_flight)
                try:
                    await self._serve(state)
                finally:
                    with state.lock:
                        state.in_flight -= counted
                await self.writer.drain()
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the peer went away (e.g. its timeout fired) or sent what is not HTTP: the connection ends
        except asyncio.CancelledError:
            pass  # the server is closing
        finally:
            if self.close_connection == "reset":
                self.writer.transport.abort()
            else:
                self.writer.close()

    async def _read_request(self) -> bool:
        """The next request's line, headers and body; False when the peer closed the connection between requests."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return False
            raise
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _Closed(f"bad request line {lines[0]!r}")
        self.command, self.path, version = parts
        self.headers = _Headers([tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line])
        self.raw = await self.reader.readexactly(int(self.headers.get("Content-Length") or 0))
        wants_close = (self.headers.get("Connection") or "").lower() == "close" or version == "HTTP/1.0"
        self.close_connection = wants_close
        return True

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the server closes meanwhile."""
        if seconds > 0 and not self.state.stopping.is_set():
            try:
                await asyncio.wait_for(self.state.wake.wait(), seconds)
            except asyncio.TimeoutError:
                pass

    async def _serve(self, state: _State) -> None:
        raw = self.raw
        split = urlsplit(self.path)
        provider, model = self._route(split.path)
        headers = {k.lower(): ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()}
        query_key = parse_qs(split.query).get("key", [None])[0]
        if provider == "stats":  # the simulator's own counters, for a harness in another process: not logged
            with state.lock:
                stats = {"requests": len(state.log), "in_flight": state.in_flight, "peak": state.peak,
                         "connections": len(state.conns), "ok": sum(1 for r in state.log if r.status == 200)}
                if parse_qs(split.query).get("reset"):
                    state.log.clear()
                    state.peak = state.in_flight
            self._send_raw(LoggedRequest(time.time(), "stats", split.path, {}, None), 200, json.dumps(stats).encode(),
                           {"Content-Type": "application/json"})
            return None
        if provider == "google_oauth":  # a service account's token request (google-auth's): no faults drawn
            entry = LoggedRequest(time.time(), provider, split.path, headers, "<assertion>", method=self.command)
            with state.lock:
                state.log.append(entry)
            status, answer = google_oauth.grant(raw, state.api_key, f"http://{self.headers.get('Host', '')}/token")
            if status == 200:
                with state.lock:
                    state.tokens.add(answer["access_token"])
            return self._send_json(entry, status, answer)
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
            await self._wait(latency)
        if provider is None:
            return self._send_json(entry, 404, {"error": {"message": f"no route {split.path}", "type": "not_found"}})
        if self.command == "GET" and provider != "colbert":
            return self._send_json(entry, 405, _error_body(provider, 405, f"{split.path} takes POST"))
        presented = self._key(provider, query_key, state, raw)
        # ColBERT takes no key; the others' 401 echoes the key, as some providers do
        if state.api_key is not None and provider != "colbert" and presented != state.api_key:
            return self._send_json(entry, 401, _error_body(provider, 401, f"Incorrect API key provided: {presented}"))
        if provider == "azure" and not parse_qs(split.query).get("api-version"):
            return self._send_json(entry, 404, _error_body("openai", 404, "Resource not found: the api-version "
                                                                           "query parameter is required"))
        provider = _FORMAT.get(provider, provider)  # from here on, the format the route speaks
        if fault == "hang":
            await self._wait(faults.hang_s)
            entry.status = -1
            self.close_connection = True
            return None
        if fault == "reset":
            entry.status = -1
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = "reset"  # aborted: the peer sees a RST
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
                events = [*events[:len(events) // 2], _malformed_event(provider)]
            return await self._send_stream(entry, events, {"Content-Type": _stream_type(provider), **limit_headers},
                                           state, cut=fault == "truncate")
        if fault == "malformed":
            payload = b'{"id": "x", "choices": [{"message": ' + payload[:20]
        if fault == "truncate":
            self._send_raw(entry, 200, payload[: len(payload) // 2], {"Content-Type": "application/json"},
                           declared_length=len(payload))
            self.close_connection = True
            return None
        self._send_raw(entry, 200, payload, {"Content-Type": "application/json", **limit_headers})
        return None

    async def _send_stream(self, entry: LoggedRequest, events: list[bytes], headers: dict, state: _State,
                           cut: bool = False) -> None:
        """A stream in HTTP/1.1 chunks, one event a chunk (``stream_delay`` s between them); ``headers``
        carry its content type; ``cut``: the connection closes half way (a truncated stream)."""
        entry.status = 200
        lines = ["HTTP/1.1 200 OK", "Cache-Control: no-cache", "Transfer-Encoding: chunked",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for event in events[:len(events) // 2] if cut else events:
            if state.stream_delay:
                await self._wait(state.stream_delay)
            self.writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await self.writer.drain()
        if cut:
            self.close_connection = True
            return
        self.writer.write(b"0\r\n\r\n")

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
        if path == "/api/chat":
            return "ollama_chat", ""
        if path == "/api/generate":
            return "ollama", ""
        match = _AZURE.match(path)
        if match:
            return "azure", match.group("deployment")
        match = _BEDROCK.match(path)
        if match:
            return "bedrock", unquote(match.group("model"))
        match = _VERTEX.match(path)
        if match:
            return "vertex_ai", unquote(match.group("model"))
        if path == STATS_PATH:
            return "stats", ""
        if path == "/token":
            return "google_oauth", ""
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

    def _key(self, provider: str, query_key: str | None, state: _State, raw: bytes) -> str | None:
        """The credential the request presents, as the server's ``api_key`` is written: a key, or for a
        signed or token-bearing route the identity a valid signature or issued token stands for."""
        if provider == "azure":
            return self.headers.get("api-key")
        if provider == "bedrock":  # a valid SigV4 signature made with the server's credentials stands for them
            return sigv4.identity(self.command, self.path, dict(self.headers.items()), raw, state.api_key)
        if provider == "vertex_ai":  # an access token the token route issued stands for the service account
            auth = self.headers.get("Authorization", "")
            with state.lock:
                issued = auth[7:] in state.tokens
            return state.api_key if issued else auth[7:] or None
        if provider in ("openai", "embeddings", "ollama_chat", "ollama"):
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
        """Status line, headers and body in one write."""
        entry.status = status
        lines = [f"HTTP/1.1 {status} {_phrase(status)}",
                 f"Content-Length: {declared_length if declared_length is not None else len(payload)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


ProviderServer.exchange = _Exchange


class _Headers:
    """A request's headers as sent (names in their case, in order), looked up case-insensitively."""

    def __init__(self, pairs: list) -> None:
        self._pairs = [(name, value) for name, value in pairs]
        self._lower = {name.lower(): value for name, value in self._pairs}

    def get(self, name: str, default: Any = None) -> Any:
        return self._lower.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``--duration``); print the URL on the first line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless testing hosts)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--error", action="append", default=[], metavar="STATUS:RATE", help="e.g. 500:0.2")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--hang", type=float, default=0.0, metavar="RATE", help="share of requests held, then closed")
    parser.add_argument("--hang-s", type=float, default=10.0, help="seconds a hung request is held")
    parser.add_argument("--answer", default=None, help="a fixed answer (default: echo the last user message)")
    parser.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rpm", type=float, default=None, help="enforce and advertise this many requests a minute")
    parser.add_argument("--tpm", type=float, default=None, help="enforce and advertise this many tokens a minute")
    args = parser.parse_args(argv)
    rates = {int(s): float(r) for s, r in (e.split(":") for e in args.error)}
    faults = Faults(error_rates=rates, latency=args.latency, retry_after=args.retry_after, seed=args.seed,
                    hang_rate=args.hang, hang_s=args.hang_s)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    limits = ServerLimits(args.rpm, args.tpm) if args.rpm or args.tpm else None
    with ProviderServer(args.answer, faults, host=args.host, port=args.port, limits=limits) as server:
        print(server.url, flush=True)
        done.wait(args.duration)


if __name__ == "__main__":
    main()
