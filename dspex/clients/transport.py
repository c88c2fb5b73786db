"""One HTTP attempt over a pooled ``requests.Session``, classified into an :class:`AttemptResult` value.

The transport never decides about retries, limits or breakers (the client actor does); it only says
what happened, with secrets scrubbed from anything it reports.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from supervision.resilience.adaptive import RateHints

from ..scrub import SCRUB_MIN, scrub_secret  # noqa: F401 - re-exported: its home was here
from .config import LMConfig, Secret
from .deadline import Deadlines, deadline_connection
from .prices import prompt_tokens_bound
from .wire import Parsed, WireError, checked, openai_calls, wire_for

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
EMPTY_RETRIES = 1  # an empty completion is asked once more (a sampled model may answer); then it is an error


class AttemptKind(str, enum.Enum):
    OK = "ok"
    STATUS = "status"  # an HTTP error status (``status``)
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # refused, reset, truncated
    MALFORMED = "malformed"  # not the promised wire format
    EMPTY = "empty"  # well formed, no text


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt produced. ``kind``: ok | status | timeout | connection | malformed | empty
    (a well-formed answer with no text: retried once, then ``MalformedResponse``)."""

    kind: AttemptKind
    latency_s: float
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    status: int = 0
    retry_after: float | None = None
    detail: str = ""
    hints: RateHints | None = None  # the limits the provider advertised in this response's headers
    estimated: bool = False  # a 200 whose counts could not be read: the tokens are the attempt's maximum
    extras: tuple[tuple[str, Any], ...] = ()  # the answer's logprobs / tool calls, when it has them

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AttemptKind(self.kind))

    @property
    def ok(self) -> bool:
        return self.kind is AttemptKind.OK

    @property
    def retryable(self) -> bool:
        if self.kind in ("timeout", "connection", "malformed", "empty"):
            return True
        return self.kind == "status" and self.status in RETRYABLE_STATUS

    @property
    def max_retries(self) -> int | None:
        """A cap of its own on retries of this kind (None: the client's ``retries``)."""
        return EMPTY_RETRIES if self.kind == "empty" else None

    @property
    def health_failure(self) -> bool:
        """Counts against the breaker: the provider is unwell (not: we were throttled or sent a bad request)."""
        return self.kind in ("timeout", "connection", "malformed") or (self.kind == "status" and self.status >= 500)


MAX_BODY = 16 * 1024 * 1024  # bytes: no chat answer is larger; a bigger body is refused, not read whole


@dataclass(frozen=True)
class HttpCall:
    """The HTTP request of one attempt, as the rules made it (``Transport.prepare``) for an executor to send:
    ``path`` is relative to the provider's origin; ``messages`` and ``params`` are kept for the estimate
    of what a broken-off 200 bills."""

    method: str
    path: str
    headers: dict
    body: bytes | None
    streaming: bool
    messages: list[dict]
    params: dict

    def __repr__(self) -> str:  # headers carry the key: never shown
        return f"<HttpCall {self.method} {self.path}>"


class BodyTooLarge(Exception):
    """A response body past MAX_BODY (its connection is dropped)."""


def _read_capped(resp: Any, limit: int) -> bytes:
    """The body, read in chunks and refused past ``limit`` bytes; the connection goes back to the pool."""
    declared = resp.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        resp.close()
        raise BodyTooLarge(f"the response declares {int(declared)} bytes (more than {limit}); not read")
    chunks, size = [], 0
    for chunk in resp.stream(65536):
        size += len(chunk)
        if size > limit:
            resp.close()
            raise BodyTooLarge(f"the response is larger than {limit} bytes; the rest was not read")
        chunks.append(chunk)
    resp.release_conn()
    return b"".join(chunks)


def _answered(resp: Any) -> bool:
    """The provider said 200 before the attempt broke off: it made (and bills) an answer."""
    return resp is not None and resp.status == 200


class Transport:
    """HTTP for one client in one process: the ``requests.Session`` connection pool, sized to ``max_in_flight``.

    Each attempt goes straight to the urllib3 pool that the session's adapter owns: the same pooled,
    keep-alive connections (and proxy / CA settings, read from the environment once), without
    ``Session.request``'s per-call merging of settings, which cost more CPU than the HTTP itself.
    """

    def __init__(self, cfg: LMConfig, key: Secret | None) -> None:
        self.cfg = cfg
        self.wire = wire_for(cfg.provider)
        self._key = key
        self._url = self.wire.url(cfg)
        split = urlsplit(self._url)
        self._path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        self._origin = f"{split.scheme}://{split.netloc}"
        self._sign_state: dict = {}  # what a signing format keeps between attempts (an access token)
        streamed = urlsplit(self.wire.stream_url(cfg))
        self._stream_path = streamed.path + (f"?{streamed.query}" if streamed.query else "")
        self._bare_headers = {**dict(cfg.headers), **self.wire.headers(key)}  # a request without a body (a GET)
        self._headers = {"Content-Type": "application/json", **self._bare_headers}
        self._timeout = urllib3.Timeout(connect=min(10.0, cfg.timeout), read=cfg.timeout)
        self.session = requests.Session()
        self.session.proxies.update(requests.utils.get_environ_proxies(self._url))
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=cfg.max_in_flight, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        probe = requests.Request("POST", self._url).prepare()
        self._pool = adapter.get_connection_with_tls_context(probe, verify=self.session.verify,
                                                             proxies=self.session.proxies)
        self._deadlines = Deadlines(f"dspex-deadlines {cfg.qualified}")
        self._pool.ConnectionCls = deadline_connection(self._pool.ConnectionCls, self._deadlines)

    def __repr__(self) -> str:
        return f"<Transport {self.cfg.qualified} {self._url}>"

    def attempt(self, messages: list[dict], params: dict,
                on_text: Callable[[str], None] | None = None) -> AttemptResult:
        """One request. With ``on_text`` (and a provider that streams) the answer is asked for as
        server-sent events and each piece of text is handed to ``on_text`` as it arrives; the outcome is
        the same either way (the whole text, the provider's counts)."""
        call = self.prepare(messages, params, streaming=on_text is not None and self.wire.streams)
        start = time.monotonic()
        self._deadlines.begin(start + self.cfg.timeout)  # the whole attempt, not each read
        streamed: Parsed | None = None
        resp: Any = None
        try:
            resp = self._pool.urlopen(call.method, call.path, body=call.body, headers=call.headers,
                                      retries=False, timeout=self._timeout,
                                      preload_content=False, assert_same_host=False)
            if call.streaming and resp.status == 200:
                streamed, raw = self._read_stream(resp, on_text), b""  # type: ignore[arg-type]
            else:
                raw = _read_capped(resp, MAX_BODY)
        except WireError as exc:  # a stream event that is not the provider's shape
            self._deadlines.end()
            return self.billed(call, "malformed", self.scrub(str(exc))[:300], start)
        except urllib3.exceptions.TimeoutError as exc:
            self._deadlines.end()
            return self.late(call, _answered(resp), start, self.scrub(str(exc)))
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, truncated body, TLS (or cut at the deadline)
            if self._deadlines.end():
                return self.late(call, _answered(resp), start)
            return self.broken(call, _answered(resp), start, self.scrub(str(exc)))
        except BodyTooLarge as exc:
            self._deadlines.end()
            return self.too_large(call, resp.status, start, str(exc))
        if self._deadlines.end():
            return self.late(call, _answered(resp), start)
        if streamed is not None:
            return self.streamed(streamed, start, self.wire.rate_hints(resp.headers))
        return self.interpret(call, resp.status, resp.headers, raw, start)

    # --- the rules, shared by every executor of an attempt (this one and ``async_transport``) -------

    def prepare(self, messages: list[dict], params: dict, *, streaming: bool = False) -> HttpCall:
        """The HTTP request of one attempt (signed, when the wire format signs: a signature covers the
        body and the time, so each attempt makes its own)."""
        if streaming:
            method, path, payload = "POST", self._stream_path, self.wire.stream_body(self.cfg, messages, params)
        else:
            method, query, payload = self.wire.request(self.cfg, messages, params)
            path = f"{self._path}{'&' if '?' in self._path else '?'}{query}" if query else self._path
        body = json.dumps(payload).encode() if payload is not None else None
        headers = self._headers if body is not None else self._bare_headers
        if self.wire.signs:
            headers = self.wire.signed(self.cfg, self._key, method, self._origin + path, headers, body,
                                       self._sign_state)
        return HttpCall(method, path, headers, body, streaming, messages, params)

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the provider (an :class:`HttpCall`'s path is relative to it)."""
        return self._origin

    def billed(self, call: HttpCall, kind: str, detail: str, start: float, counts: tuple[int, int] | None = None,
               hints: RateHints | None = None, status: int = 200) -> AttemptResult:
        """The provider answered 200, so it bills the attempt, but the answer is unusable: booked at
        what the body says it used, else at the attempt's maximum (marked ``estimated``)."""
        latency = time.monotonic() - start
        if counts is None and not self.wire.bills:  # an API that bills nothing: no estimate either
            counts = (0, 0)
        if counts is not None:
            return AttemptResult(kind, latency, "", counts[0], counts[1], status=status, detail=detail, hints=hints)
        return AttemptResult(kind, latency, "", prompt_tokens_bound(call.messages),
                             int(call.params.get("max_tokens", self.cfg.max_tokens)), status=status, detail=detail,
                             hints=hints, estimated=True)

    def late(self, call: HttpCall, answered: bool, start: float, detail: str = "") -> AttemptResult:
        """No complete answer within the attempt's deadline (billed when a 200 had begun)."""
        detail = detail or f"no complete answer within timeout={self.cfg.timeout:g}s"
        if answered:
            return self.billed(call, "timeout", detail, start, status=0)
        return AttemptResult("timeout", time.monotonic() - start, detail=detail)

    def broken(self, call: HttpCall, answered: bool, start: float, detail: str) -> AttemptResult:
        """Refused, reset or cut off (a 200 whose body was cut off was made, and billed)."""
        if answered:
            return self.billed(call, "connection", f"the 200 answer was cut off ({detail})", start, status=0)
        return AttemptResult("connection", time.monotonic() - start, detail=detail)

    def too_large(self, call: HttpCall, status: int, start: float, detail: str) -> AttemptResult:
        if status == 200:
            return self.billed(call, "malformed", detail, start)
        return AttemptResult("malformed", time.monotonic() - start, status=status, detail=detail)

    def streamed(self, parsed: Parsed, start: float, hints: RateHints | None) -> AttemptResult:
        """A whole streamed answer (``_read_stream``), classified."""
        latency = time.monotonic() - start
        if not parsed.text.strip() and not parsed.extras:  # a tool call alone is an answer
            return AttemptResult("empty", latency, "", parsed.prompt_tokens, parsed.completion_tokens,
                                 parsed.model, status=200, detail="the streamed completion is empty", hints=hints)
        return AttemptResult("ok", latency, parsed.text, parsed.prompt_tokens, parsed.completion_tokens,
                             parsed.model, status=200, hints=hints, extras=parsed.extras)

    def interpret(self, call: HttpCall, status: int, headers: Any, raw: bytes, start: float) -> AttemptResult:
        """A whole (not streamed) answer, classified: ``headers`` a case-insensitive mapping."""
        latency = time.monotonic() - start
        hints = self.wire.rate_hints(headers)
        excerpt = lambda: self.scrub(raw[:4096].decode("utf-8", "replace"))[:300]  # noqa: E731 - scrub, then cut
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any answer is
            data = None
        if status != 200:
            lowered = {k.lower(): v for k, v in headers.items()}
            return AttemptResult("status", latency, status=status, detail=excerpt(),
                                 retry_after=self.wire.retry_after(lowered, data), hints=hints)
        if data is None:
            return self.billed(call, "malformed", excerpt(), start, hints=hints)
        try:
            parsed = self.wire.parse(data)
        except WireError as exc:
            return self.billed(call, "malformed", f"{exc}; body: {excerpt()}", start, self.wire.usage(data), hints)
        if not parsed.text.strip() and not parsed.extras:  # a tool call alone is an answer
            return AttemptResult("empty", latency, "", parsed.prompt_tokens, parsed.completion_tokens, parsed.model,
                                 status=200, detail=f"the completion is empty; body: {excerpt()}", hints=hints)
        return AttemptResult("ok", latency, parsed.text, parsed.prompt_tokens, parsed.completion_tokens,
                             parsed.model, status=200, hints=hints, extras=parsed.extras)

    def _read_stream(self, resp: Any, on_text: Callable[[str], None]) -> Parsed:
        """A streamed answer, event by event (the wire format's framing), each piece of text handed to
        ``on_text`` as it arrives; the whole answer with the provider's counts at the end."""
        text: list[str] = []
        calls: dict[Any, dict] = {}  # tool calls as their pieces arrive, by the provider's index
        prompt = completion = 0
        model = ""
        for data in self._stream_events(resp):
            delta = self.wire.stream_event(data)
            prompt = delta.prompt_tokens if delta.prompt_tokens is not None else prompt
            completion = delta.completion_tokens if delta.completion_tokens is not None else completion
            model = delta.model or model
            if delta.text:
                text.append(delta.text)
                on_text(delta.text)
            for piece in delta.calls:
                key = piece.get("index")
                call = calls.setdefault(key if key is not None else ("new", len(calls)),
                                        {"id": None, "name": "", "arguments": ""})
                call["id"] = piece.get("id") or call["id"]
                call["name"] = piece.get("name") or call["name"]
                call["arguments"] += piece.get("arguments") or ""
        resp.release_conn()
        parsed = checked("".join(text), prompt, completion, model, self.wire.count_fields)
        return replace(parsed, extras=(("tool_calls", openai_calls(list(calls.values()))),)) if calls else parsed

    def _stream_events(self, resp: Any) -> Iterator[Any]:
        """The stream's events as JSON values, by the wire format's framing (at most MAX_BODY bytes read;
        WireError for an event that cannot be read)."""
        size = 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            for chunk in resp.stream(4096):
                size += len(chunk)
                if size > MAX_BODY:
                    resp.close()
                    raise BodyTooLarge(f"the stream is larger than {MAX_BODY} bytes; the rest was not read")
                yield chunk

        def loaded(payload: bytes) -> Any:
            try:
                return json.loads(payload)
            except (ValueError, RecursionError) as exc:
                raise WireError(f"a stream event is not JSON ({exc})") from None

        framing = self.wire.stream_framing
        if framing == "aws-eventstream":
            yield from _aws_events(chunks(), loaded)
            return
        pending = b""
        for chunk in chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                line = line.strip()
                if framing == "ndjson":
                    if line:
                        yield loaded(line)
                    continue
                if not line.startswith(b"data:"):
                    continue  # event names, comments, keep-alives
                payload = line[5:].strip()
                if payload != b"[DONE]":
                    yield loaded(payload)
        if framing == "ndjson" and pending.strip():
            yield loaded(pending.strip())

    def scrub(self, text: str) -> str:
        """Remove the key from text that may echo the request (error bodies, exception messages): the key
        and any fragment of it of ``SCRUB_MIN`` characters or more, in any letter case."""
        return scrub_secret(text, self._key.reveal()) if self._key is not None else text

    def close(self) -> None:
        self.session.close()


def _aws_events(chunks: Iterator[bytes], loaded: Callable[[bytes], Any]) -> Iterator[dict]:
    """AWS's event stream (Bedrock's ConverseStream) decoded by botocore's own reader, which checks each
    message's checksums: ``{"event": type, "payload": JSON}`` per event; an exception message in the stream
    is a WireError that says it."""
    from botocore.eventstream import EventStreamBuffer, ParserError

    buffer = EventStreamBuffer()
    for chunk in chunks:
        buffer.add_data(chunk)
        try:
            messages = list(buffer)
        except ParserError as exc:
            raise WireError(f"the event stream is damaged ({type(exc).__name__}: {exc})") from None
        for message in messages:
            headers = message.headers
            if headers.get(":message-type") != "event":
                kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
                detail = message.payload.decode("utf-8", "replace")[:300]
                raise WireError(f"the stream reported {kind}: {detail}")
            yield {"event": headers.get(":event-type", ""), "payload": loaded(message.payload)}


__all__ = ["Transport", "HttpCall", "AttemptResult", "AttemptKind", "RETRYABLE_STATUS", "MAX_BODY", "BodyTooLarge"]
