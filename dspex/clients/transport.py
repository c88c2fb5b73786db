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
        streaming = on_text is not None and self.wire.streams
        if streaming:
            method, path, payload = "POST", self._stream_path, self.wire.stream_body(self.cfg, messages, params)
        else:
            method, query, payload = self.wire.request(self.cfg, messages, params)
            path = f"{self._path}{'&' if '?' in self._path else '?'}{query}" if query else self._path
        body = json.dumps(payload).encode() if payload is not None else None
        headers = self._headers if body is not None else self._bare_headers
        if self.wire.signs:  # a signature covers the body and the time: made for each attempt
            headers = self.wire.signed(self.cfg, self._key, method, self._origin + path, headers, body,
                                       self._sign_state)
        start = time.monotonic()
        self._deadlines.begin(start + self.cfg.timeout)  # the whole attempt, not each read
        streamed: Parsed | None = None
        resp: Any = None

        def billed(kind: str, detail: str, counts: tuple[int, int] | None = None, hints: RateHints | None = None,
                   status: int = 200) -> AttemptResult:
            """The provider answered 200, so it bills the attempt, but the answer is unusable: booked at
            what the body says it used, else at the attempt's maximum (marked ``estimated``)."""
            latency = time.monotonic() - start
            if counts is None and not self.wire.bills:  # an API that bills nothing: no estimate either
                counts = (0, 0)
            if counts is not None:
                return AttemptResult(kind, latency, "", counts[0], counts[1], status=status, detail=detail, hints=hints)
            return AttemptResult(kind, latency, "", prompt_tokens_bound(messages),
                           int(params.get("max_tokens", self.cfg.max_tokens)), status=status, detail=detail,
                           hints=hints, estimated=True)

        try:
            resp = self._pool.urlopen(method, path, body=body,
                                      headers=headers,
                                      retries=False, timeout=self._timeout,
                                      preload_content=False, assert_same_host=False)
            if streaming and resp.status == 200:
                streamed, raw = self._read_stream(resp, on_text), b""  # type: ignore[arg-type]
            else:
                raw = _read_capped(resp, MAX_BODY)
        except WireError as exc:  # a stream event that is not the provider's shape
            self._deadlines.end()
            return billed("malformed", self.scrub(str(exc))[:300])
        except urllib3.exceptions.TimeoutError as exc:
            self._deadlines.end()
            if _answered(resp):
                return billed("timeout", self.scrub(str(exc)), status=0)
            return AttemptResult("timeout", time.monotonic() - start, detail=self.scrub(str(exc)))
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, truncated body, TLS (or cut at the deadline)
            if self._deadlines.end():
                late = f"no complete answer within timeout={self.cfg.timeout:g}s"
                return (billed("timeout", late, status=0) if _answered(resp)
                        else AttemptResult("timeout", time.monotonic() - start, detail=late))
            if _answered(resp):  # the 200's body was cut off: the answer was made (and billed)
                return billed("connection", f"the 200 answer was cut off ({self.scrub(str(exc))})", status=0)
            return AttemptResult("connection", time.monotonic() - start, detail=self.scrub(str(exc)))
        except BodyTooLarge as exc:
            self._deadlines.end()
            if _answered(resp):
                return billed("malformed", str(exc))
            return AttemptResult("malformed", time.monotonic() - start, status=resp.status, detail=str(exc))
        if self._deadlines.end():
            late = f"no complete answer within timeout={self.cfg.timeout:g}s"
            return (billed("timeout", late, status=0) if _answered(resp)
                    else AttemptResult("timeout", time.monotonic() - start, detail=late))
        latency = time.monotonic() - start
        hints = self.wire.rate_hints(resp.headers)  # case-insensitive header lookups
        if streamed is not None:
            if not streamed.text.strip() and not streamed.extras:  # a tool call alone is an answer
                return AttemptResult("empty", latency, "", streamed.prompt_tokens, streamed.completion_tokens,
                               streamed.model, status=200, detail="the streamed completion is empty", hints=hints)
            return AttemptResult("ok", latency, streamed.text, streamed.prompt_tokens, streamed.completion_tokens,
                           streamed.model, status=200, hints=hints, extras=streamed.extras)
        excerpt = lambda: self.scrub(raw[:4096].decode("utf-8", "replace"))[:300]  # noqa: E731 - scrub, then cut
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any answer is
            data = None
        if resp.status != 200:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            return AttemptResult("status", latency, status=resp.status, detail=excerpt(),
                           retry_after=self.wire.retry_after(headers, data), hints=hints)
        if data is None:
            return billed("malformed", excerpt(), hints=hints)
        try:
            parsed = self.wire.parse(data)
        except WireError as exc:
            return billed("malformed", f"{exc}; body: {excerpt()}", self.wire.usage(data), hints)
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


__all__ = ["Transport", "AttemptResult", "AttemptKind", "RETRYABLE_STATUS"]
